#!/usr/bin/env bash
# deploy/demo.sh: called by `make demo` after the build. It will start vdid with a demo
# configuration under ./var and print how to connect, once the broker exists (issue 8). Until
# then it says so and fails, rather than pretending.
set -euo pipefail
echo "make demo: the built programs are in ${VDI_BIN:-build/bin}, but vdid cannot serve desktops" >&2
echo "make demo: in this build yet; see the status table in README.md for what works today" >&2
exit 1
