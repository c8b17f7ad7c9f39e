#!/usr/bin/env bash
# golden-images/recipes/debian-desktop/import.sh VDICTL OUT: import the image that build.sh made
# in OUT into the image catalogue as the next version of `debian-desktop`, with its kernel,
# initrd and command line. The catalogue is vdictl's: --state / $VDI_STATE_DIR, else the system
# one (/var/lib/vdi). A build is imported once per catalogue: OUT/imported.* stamps remember
# which catalogue has it; a new build is imported again as a new version.
set -euo pipefail
vdictl=${1:?usage: import.sh VDICTL OUT}
out=${2:?usage: import.sh VDICTL OUT}
name=${IMAGE_NAME:-debian-desktop}
state=${VDI_STATE_DIR:-/var/lib/vdi}
stamp=$out/imported.$(printf '%s' "$(realpath -m "$state")" | sha256sum | cut -c1-16)

if [ -f "$stamp" ] && [ "$stamp" -nt "$out/disk.qcow2" ] &&
    "$vdictl" image show "$name" >/dev/null 2>&1; then
    echo "debian-desktop: already imported into $state as $name ($(cat "$stamp"))"
    exit 0
fi
"$vdictl" image import "$name" "$out/disk.qcow2" --kernel "$out/vmlinuz" \
    --initrd "$out/initrd.img" --cmdline "$(cat "$out/cmdline")" \
    --notes "debian-desktop recipe, kernel $(cat "$out/kernel-version" 2>/dev/null || echo '?')"
printf 'state=%s imported=%s\n' "$state" "$(date -u +%FT%TZ)" >"$stamp"
"$vdictl" image list | sed -n "1p;/^$name\b/p"
