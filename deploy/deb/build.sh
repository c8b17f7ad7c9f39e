#!/usr/bin/env bash
# deploy/deb/build.sh OUT VERSION VDID VDICTL VDI_VMM VDI_JAIL: build the Debian package
# OUT/vdi_VERSION_ARCH.deb with plain dpkg-deb from the tree staged in OUT/root. `make deb` calls
# it after `make install-web` has put the portal's pages and noVNC in OUT/root/usr/share/vdi/.
#
# Layout (docs/install.md): vdid and vdi-vmm in /usr/sbin (vdid starts the vdi-vmm next to it, the
# jail helper in ../lib/vdi/vdi-jail, and finds the web files in ../share/vdi/), vdictl in /usr/bin, the unit in /lib/systemd/system, the
# conffiles /etc/vdi/vdid.conf and /etc/pam.d/vdi, man pages in section 8. The control file's
# Depends come from dpkg-shlibdeps; the maintainer scripts are the ones next to this file.
set -euo pipefail
[ $# = 6 ] || { echo "usage: $0 OUT VERSION VDID VDICTL VDI_VMM VDI_JAIL" >&2; exit 2; }
out=$(realpath -m "$1") version=$2 vdid=$3 vdictl=$4 vmm=$5 jail=$6
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
root=$out/root
die() { echo "deb: $*" >&2; exit 1; }
umask 022

for tool in dpkg-deb dpkg-shlibdeps strip gzip; do
    command -v "$tool" >/dev/null || die "$tool is missing (deploy/install-deps.sh installs it)"
done
arch=$(dpkg --print-architecture)
maint=$(sed -n 's/^Maintainer: //p' "$here/control.in")
[ -d "$root/usr/share/vdi/web" ] && [ -d "$root/usr/share/vdi/novnc/core" ] ||
    die "$root/usr/share/vdi/{web,novnc} missing: run it through make deb"

# ---- programs
install -D -m 0755 "$vdid" "$root/usr/sbin/vdid"
install -D -m 0755 "$vmm" "$root/usr/sbin/vdi-vmm"
install -D -m 0755 "$vdictl" "$root/usr/bin/vdictl"
# vdi-jail: vdid's helper that jails each VMM (docs/security.md); not for people, no man page.
install -D -m 0755 "$jail" "$root/usr/lib/vdi/vdi-jail"
# as dh_strip does (the build keeps -g for developers)
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    "$root/usr/sbin/vdid" "$root/usr/sbin/vdi-vmm" "$root/usr/bin/vdictl" "$root/usr/lib/vdi/vdi-jail"

# ---- the systemd unit with the packaged paths
install -d "$root/lib/systemd/system"
{
    echo "# /lib/systemd/system/vdid.service, from the vdi package (deploy/vdid.service)."
    echo "# Local changes: systemctl edit vdid (a drop-in that upgrades keep)."
    sed -e '1,/^\[Unit\]/{/^\[Unit\]/!d}' \
        -e 's#/usr/local/bin/vdid#/usr/sbin/vdid#g' \
        -e 's#^Documentation=.*#Documentation=man:vdid(8) file:/usr/share/doc/vdi/install.md file:/usr/share/doc/vdi/config.md#' \
        "$src/deploy/vdid.service"
} >"$root/lib/systemd/system/vdid.service"
chmod 0644 "$root/lib/systemd/system/vdid.service"
! grep -q /usr/local "$root/lib/systemd/system/vdid.service" || die "vdid.service: /usr/local left"

# ---- conffiles: the PAM service and vdid.conf (deploy/vdid.conf with the group for vdictl, and
# its example pools commented out: their images do not exist yet on a new host)
install -D -m 0644 "$here/vdi.pam" "$root/etc/pam.d/vdi"
install -d "$root/etc/vdi"
awk '
NR == 1 { print "# /etc/vdi/vdid.conf, from the vdi package. Every key and its default:"
          print "# /usr/share/doc/vdi/config.md. Upgrades keep your changes (a conffile)."; next }
/^# admin_group = / { print "admin_group = vdi"; next }
/^# One section per pool/ {
    print; pools = 1
    print "# These two are examples: import their images first (vdictl image import), then"
    print "# uncomment them or write your own."
    next
}
pools && NF && !/^#/ { print "# " $0; next }
{ print }
' "$src/deploy/vdid.conf" >"$root/etc/vdi/vdid.conf"
chmod 0644 "$root/etc/vdi/vdid.conf"
grep -qx 'admin_group = vdi' "$root/etc/vdi/vdid.conf" || die "vdid.conf: no admin_group line"
! grep -q '^\[pool' "$root/etc/vdi/vdid.conf" || die "vdid.conf: a pool is left uncommented"
"$vdid" --check-config -c "$root/etc/vdi/vdid.conf" >/dev/null || die "the packaged vdid.conf does not pass --check-config"

# ---- man pages (troff sources in deploy/man/, with this version in their title line)
for page in vdid vdictl vdi-vmm; do
    install -d "$root/usr/share/man/man8"
    sed "1,/^\.TH/s/\"vdi [^\"]*\"/\"vdi $version\"/" "$src/deploy/man/$page.8" |
        gzip -9n >"$root/usr/share/man/man8/$page.8.gz"
done

# ---- documentation, copyright, changelog (a native package: changelog.gz). A version other
# than the changelog's newest gets an entry of its own.
doc=$root/usr/share/doc/vdi
install -d "$doc"
install -m 0644 "$here/copyright" "$doc/copyright"
install -m 0644 "$src/docs/install.md" "$src/docs/config.md" "$src/docs/admin.md" "$doc/"
newest=$(sed -n '1s/^vdi (\([^)]*\)).*/\1/p' "$here/changelog")
{
    if [ "$version" != "$newest" ]; then
        rev=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)
        printf 'vdi (%s) unstable; urgency=medium\n\n  * Built from git revision %s.\n\n -- %s  %s\n\n' \
            "$version" "$rev" "$maint" "$(date -R)"
    fi
    cat "$here/changelog"
} | gzip -9n >"$doc/changelog.gz"
# The copyright file carries noVNC's and pako's licences; their copies would be extra files.
rm -f "$root/usr/share/vdi/novnc/LICENSE.txt" "$root/usr/share/vdi/novnc/vendor/pako/LICENSE" \
    "$root/usr/share/vdi/novnc/vendor/pako/README.md"

# ---- DEBIAN/: control, conffiles, md5sums, maintainer scripts
install -d -m 0755 "$root/DEBIAN"
shl=$(mktemp -d)
trap 'rm -rf "$shl"' EXIT
mkdir "$shl/debian"
printf 'Source: vdi\n\nPackage: vdi\nArchitecture: any\n' >"$shl/debian/control"
ln -s "$root" "$shl/debian/vdi" # where dpkg-shlibdeps expects a package's files
shlibs=$(cd "$shl" && dpkg-shlibdeps -O --warnings=0 -edebian/vdi/usr/sbin/vdid \
    -edebian/vdi/usr/sbin/vdi-vmm -edebian/vdi/usr/bin/vdictl -edebian/vdi/usr/lib/vdi/vdi-jail | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no dependencies"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" -e "s/@SHLIBS@/$shlibs/" \
    "$here/control.in" >"$root/DEBIAN/control"
(cd "$root" && find etc -type f | sort | sed 's#^#/#') >"$root/DEBIAN/conffiles"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's#^\./##' | LC_ALL=C sort |
    xargs -d '\n' md5sum) >"$root/DEBIAN/md5sums"
for script in postinst prerm postrm; do
    install -m 0755 "$here/$script" "$root/DEBIAN/$script"
done
for f in control conffiles md5sums; do chmod 0644 "$root/DEBIAN/$f"; done

deb=$out/vdi_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "deb: $deb"
