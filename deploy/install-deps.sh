#!/usr/bin/env bash
# deploy/install-deps.sh: install every Debian package vdi needs to build, run and test.
# The lists are deploy/deps/*.txt (one package per line, '#' comments), one file per module.
# Idempotent: when everything is present it only asks dpkg, and touches no network.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

want=()
for list in "$here"/deps/*.txt; do
    while read -r pkg _; do
        [ -n "$pkg" ] && [ "${pkg:0:1}" != "#" ] && want+=("$pkg")
    done <"$list"
done

missing=()
status=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${want[@]}" 2>/dev/null || true)
for pkg in "${want[@]}"; do
    grep -qx "$pkg installed" <<<"$status" || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "install-deps: missing Debian packages: ${missing[*]}" >&2
        echo "install-deps: run as root (or: sudo apt-get install ${missing[*]})" >&2
        exit 1
    fi
    echo "install-deps: installing ${#missing[@]} Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Refresh the package lists only if they are missing or older than a day.
    if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -n1)" ]; then
        apt-get update -q
    fi
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# npm packages (browser viewer and browser tests), if a module lists any.
if [ -f "$here/deps/npm/package.json" ]; then
    npm_dir=$here/deps/npm
    # A plain Debian 12 has no npm; Debian's own package brings it (with Debian's nodejs). Where
    # node and npm came from elsewhere (e.g. a vendor nodejs package), those are used as they are.
    if ! command -v npm >/dev/null 2>&1; then
        if [ "$(id -u)" != 0 ]; then
            echo "install-deps: npm is missing; run as root (or: sudo apt-get install npm)" >&2
            exit 1
        fi
        echo "install-deps: installing Debian's npm"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm
    fi
    if [ ! -d "$npm_dir/node_modules" ] || [ "$npm_dir/package-lock.json" -nt "$npm_dir/node_modules" ]; then
        echo "install-deps: installing npm packages into $npm_dir/node_modules"
        (cd "$npm_dir" && npm ci --no-audit --no-fund --loglevel=error && touch node_modules)
    fi
fi
echo "install-deps: all ${#want[@]} Debian packages present"
