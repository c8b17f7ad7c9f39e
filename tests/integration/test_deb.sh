#!/usr/bin/env bash
# The Debian package, installed as admins install it. `make deb` builds it; lintian finds no
# errors; it holds the programs, unit, PAM service, conffiles, web files and man pages, and the
# man pages name every option and command the programs' --help shows. Then dpkg installs it into
# a copy-on-write view of this very system (an overlay on / in a mount namespace of this suite's
# own, entered with chroot; nothing reaches the real system): the maintainer scripts make the
# group "vdi" and the 0700 state directory and enable the unit; the installed unit passes
# systemd-analyze verify at an OK exposure level; vdid started from the installed tree with an
# edited /etc/vdi/vdid.conf finds its web files, answers on its admin socket (a member of "vdi"
# may use it), and logs a user in through the packaged PAM service (pam_unix, the view's
# /etc/shadow) onto a desktop (the stand-in VMM). An upgrade to a newer version keeps the edited
# conffile and the state (the same desktop), and restarts vdid where systemd runs; purge leaves
# nothing of the package behind (the group stays, as Debian packages do).
# timeout: 300
. "$VDI_SRC/tests/lib.sh"

# The rest runs in a mount namespace of its own: the view's mounts go away with the suite.
if [ "${_VDI_DEB_NS:-}" != 1 ]; then
    t_require_root
    command -v unshare >/dev/null || t_need "unshare (util-linux) is missing"
    unshare -m --propagation private true 2>/dev/null || t_need "cannot make a mount namespace"
    _VDI_DEB_NS=1 exec unshare -m --propagation private bash "$0" "$@"
fi
for tool in dpkg-deb dpkg-shlibdeps lintian systemd-analyze chroot useradd chpasswd; do
    command -v "$tool" >/dev/null || t_need "$tool is missing (deploy/install-deps.sh installs it)"
done
[ -d "$VDI_SRC/deploy/deps/npm/node_modules/@novnc/novnc/core" ] ||
    t_need "noVNC is missing (deploy/install-deps.sh installs it)"
FAKE=$VDI_BUILD/tests/tools/vdid_fakevmm
VNC=$VDI_BUILD/tests/tools/vdid_vncclient
t_tmpdir
M=$T/view/root # the view's root directory

# Processes whose root is the view: vdid and the VMMs it started (they run in sessions of their
# own, so the runner's process-group kill does not reach them).
view_pids() {
    local p
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$M" ] && echo "${p#/proc/}"
    done
}
no_view_pids() { test -z "$(view_pids)"; }
stop_view() {
    local p
    for p in $(view_pids); do kill -9 "$p" 2>/dev/null; done
    t_wait_for 5 no_view_pids
}
cleanup() {
    if mountpoint -q "$T/view" 2>/dev/null; then
        stop_view
        umount -R -l "$T/view"
    fi
    t_cleanup
}
trap cleanup EXIT

# ---- the packages: this version, and a newer one for the upgrade
build_deb() { # DIR [VERSION]: a make of its own, not a part of the one that may run this suite
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$VDI_SRC" --no-print-directory deb DEB_DIR="$1" DEB_BINDIR="$VDI_BIN" \
        ${2:+DEB_VERSION=$2} >"$T/make-deb.log" 2>&1 ||
        t_fail "make deb failed: $(tail -n 5 "$T/make-deb.log")"
    deb=$(echo "$1"/vdi_*.deb)
}
build_deb "$T/deb1"
deb1=$deb
t_check "make deb made a package" test -f "$deb1"
t_check "for this machine's architecture" \
    test "$(dpkg-deb -f "$deb1" Architecture)" = "$(dpkg --print-architecture)"
t_check "named vdi" test "$(dpkg-deb -f "$deb1" Package)" = vdi
ver1=$(dpkg-deb -f "$deb1" Version)
ver2=$ver1+upgrade1
build_deb "$T/deb2" "$ver2"
deb2=$deb
t_check "make deb DEB_VERSION=V makes version V" test "$(dpkg-deb -f "$deb2" Version)" = "$ver2"

lintian --fail-on error "$deb1" >"$T/lintian.log" 2>&1
rc=$?
sed 's/^/# lintian: /' "$T/lintian.log"
t_check "lintian finds no errors" test "$rc" = 0
t_check "nor does it for the upgrade's package" lintian --fail-on error "$deb2"

list=$(dpkg-deb -c "$deb1" | awk '{print $6}')
for f in usr/sbin/vdid usr/sbin/vdi-vmm usr/bin/vdictl lib/systemd/system/vdid.service \
    etc/pam.d/vdi etc/vdi/vdid.conf usr/share/vdi/web/index.html usr/share/vdi/novnc/core/rfb.js \
    usr/share/man/man8/vdid.8.gz usr/share/man/man8/vdictl.8.gz usr/share/man/man8/vdi-vmm.8.gz \
    usr/share/doc/vdi/copyright usr/share/doc/vdi/changelog.gz usr/share/doc/vdi/install.md; do
    t_check "the package holds /$f" grep -qx "./$f" <<<"$list"
done
t_check "vdid.conf and the PAM service are its conffiles" \
    test "$(dpkg-deb -I "$deb1" conffiles | sort | tr '\n' ' ')" = "/etc/pam.d/vdi /etc/vdi/vdid.conf "
t_check "it depends on the libraries vdid links" bash -c 'dpkg-deb -f "$1" Depends | grep -q libuv1' _ "$deb1"

# The man pages name every long option of each program's --help, and every vdictl command.
mkdir "$T/x"
dpkg-deb -x "$deb1" "$T/x"
page_text() { zcat "$T/x/usr/share/man/man8/$1.8.gz" | sed 's/\\-/-/g; s/\\f[BIRP]//g'; }
for prog in vdid vdictl vdi-vmm; do
    text=$(page_text "$prog")
    missing=
    for opt in $("$VDI_BIN/$prog" --help | grep -oE -- '--[a-z][a-z-]+' | sort -u); do
        grep -qF -- "$opt" <<<"$text" || missing="$missing $opt"
    done
    t_check "$prog(8) names every option of $prog --help${missing:+ (missing:$missing)}" test -z "$missing"
done
text=$(page_text vdictl)
missing=
for cmd in $("$VDI_BIN/vdictl" --help | sed -n '/^Commands:/,$s/^  \([a-z][a-z-]*\) .*/\1/p') \
    $("$VDI_BIN/vdictl" image --help | sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p'); do
    grep -qE "^\.B $cmd( |$)" <<<"$text" || missing="$missing $cmd"
done
t_check "vdictl(8) describes every command and image command${missing:+ (missing:$missing)}" test -z "$missing"

# ---- the view: an overlay on / (its changes in a tmpfs), with its own /dev, /proc, /tmp, /run
mkdir "$T/view"
mount -t tmpfs -o mode=0755 tmpfs "$T/view"
mkdir "$T/view/upper" "$T/view/work" "$M"
mount -t overlay overlay -o "lowerdir=/,upperdir=$T/view/upper,workdir=$T/view/work" "$M" ||
    t_need "cannot mount an overlay on / (overlayfs)"
mount -t proc proc "$M/proc"
mount -t tmpfs -o mode=0755 tmpfs "$M/dev"
mknod -m 0666 "$M/dev/null" c 1 3
mknod -m 0666 "$M/dev/zero" c 1 5
mknod -m 0666 "$M/dev/random" c 1 8
mknod -m 0666 "$M/dev/urandom" c 1 9
mount -t tmpfs -o mode=1777 tmpfs "$M/tmp"
mount -t tmpfs -o mode=0755 tmpfs "$M/run"
mount -t sysfs -o ro sysfs "$M/sys" 2>/dev/null || true
# A stand-in systemctl records what the maintainer scripts ask of systemd and plays the running
# manager (start, stop, restart, daemon-reload, is-*); offline work (deb-systemd-helper's preset)
# goes to the real one. policy-rc.d (containers have one that forbids starting services) and
# man-db's index update (seconds) are left out.
mkdir "$M/tmp/bin"
cat >"$M/tmp/bin/systemctl" <<'SH'
#!/bin/sh
echo "$*" >>/run/systemctl.log
case " $* " in
*" is-enabled "*) echo enabled ;;
*" is-active "* | *" start "* | *" stop "* | *" restart "* | *" daemon-reload "*) ;;
*) exec /usr/bin/systemctl "$@" ;;
esac
exit 0
SH
chmod 0755 "$M/tmp/bin/systemctl"
rm -f "$M/usr/sbin/policy-rc.d" "$M/var/lib/man-db/auto-update"
cp "$deb1" "$deb2" "$M/tmp/"
cp "$FAKE" "$VNC" "$M/tmp/bin/"
in_view() { chroot "$M" env PATH=/tmp/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
systemctl_log() { cat "$M/run/systemctl.log" 2>/dev/null; }

# ---- install (no systemd running in the view: the unit is enabled, not started)
# A system that has the package (or its group) already: the view starts without them.
if in_view dpkg-query -W vdi >/dev/null 2>&1; then in_view dpkg --purge vdi >/dev/null 2>&1; fi
if in_view getent group vdi >/dev/null; then in_view groupdel vdi; fi
upper_files() { (cd "$T/view/upper" && find . ! -type d | sed 's#^\./##' | LC_ALL=C sort); }
upper_files >"$T/upper.before" # what the view changed before the package came
in_view dpkg -i "/tmp/$(basename "$deb1")" >"$T/dpkg-install.log" 2>&1 ||
    t_fail "dpkg -i failed: $(tail -n 5 "$T/dpkg-install.log")"
t_check "dpkg -i installs it" bash -c 'chroot "$1" dpkg-query -W -f "\${Status} \${Version}" vdi | grep -qx "install ok installed $2"' _ "$M" "$ver1"
t_check "postinst made the system group vdi" in_view getent group vdi >/dev/null
gid=$(in_view getent group vdi | cut -d: -f3)
t_check "a system group (gid $gid)" test "$gid" -lt 1000
t_check "postinst made /var/lib/vdi mode 0700" test "$(stat -c %a "$M/var/lib/vdi")" = 700
t_check "the unit is enabled" \
    test "$(readlink "$M/etc/systemd/system/multi-user.target.wants/vdid.service")" = /lib/systemd/system/vdid.service
t_check "vdid was not started: systemd does not run here" \
    bash -c '! grep -qE "(start|daemon-reload)( |$)" <<<"$1"' _ "$(systemctl_log)"
t_check "the unit runs the packaged vdid" grep -q '^ExecStart=/usr/sbin/vdid --config /etc/vdi/vdid.conf$' "$M/lib/systemd/system/vdid.service"
t_check "systemd-analyze verify accepts the installed unit" in_view systemd-analyze verify /lib/systemd/system/vdid.service
in_view systemd-analyze security --offline=yes /lib/systemd/system/vdid.service >"$T/security.log" 2>&1
t_log "$(tail -n 1 "$T/security.log")"
t_check "its exposure level is OK (below 5.0)" \
    in_view systemd-analyze security --offline=yes --threshold=49 /lib/systemd/system/vdid.service >/dev/null 2>&1
t_check "the packaged vdid.conf passes --check-config" in_view vdid --check-config >/dev/null
t_check "the man pages are installed" in_view man -w vdid vdictl vdi-vmm >/dev/null

# ---- the admin edits the conffile: loopback, the stand-in VMM, a pool for alice
conf=$M/etc/vdi/vdid.conf
sed -i -e 's/^listen = .*/listen = 127.0.0.1:0/' "$conf"
cat >>"$conf" <<'CONF'

# edited by test_deb
[pool lab]
image = testdesk
type = dedicated
memory = 64M
framebuffer = 336x200
users = alice
CONF
# jail = no: the installed tree runs in a chroot, where pivot_root (the VMM's jail) cannot work;
# the jail has its own suite (test_vdid_jail.sh).
sed -i -e '/^\[vdid\]$/a web_listen = 127.0.0.1:0\nvmm = /tmp/bin/vdid_fakevmm\nmemory_budget = 4G\njail = no' "$conf"
cp "$conf" "$T/vdid.conf.edited"
in_view useradd --no-create-home --shell /usr/sbin/nologin alice
echo 'alice:Pw-of-alice-1' | in_view chpasswd
in_view useradd --no-create-home --shell /usr/sbin/nologin --groups vdi carol
truncate -s 1M "$M/tmp/disk.raw"
echo "not a kernel" >"$M/tmp/kernel"
in_view vdictl image import testdesk /tmp/disk.raw --kernel /tmp/kernel -q >/dev/null 2>&1 ||
    t_fail "vdictl image import into /var/lib/vdi failed"

start_vdid() {
    t_bg chroot "$M" /usr/sbin/vdid 2>>"$T/vdid.log"
    vdid=$!
    t_wait_for 15 test -S "$M/run/vdi/vdid.sock" || t_fail "vdid did not start: $(tail -n 5 "$T/vdid.log")"
    port=$(in_view vdictl status --json | sed -n 's/^ *"rfb_port": \([0-9]*\),*$/\1/p')
    [ -n "$port" ] || t_fail "no gateway port"
}
stop_vdid() {
    kill -TERM "$vdid"
    wait "$vdid"
}
login() { # USER PASSWORD [ARGS...]: the viewer's output; its exit status in $rc
    local u=$1 pw=$2
    shift 2
    out=$(VDI_TEST_PASSWORD=$pw in_view /tmp/bin/vdid_vncclient "127.0.0.1:$port" "$u" \
        --ca /var/lib/vdi/tls/cert.pem "$@" 2>>"$T/vnc.log")
    rc=$?
}
desktop_of() { in_view vdictl desktops list --json | awk -v u="$1" '/"id":/ {gsub(/[^0-9]/,"",$2); id=$2} /"owner":/ && $2 == "\"" u "\"," {print id}'; }

start_vdid
t_check "vdid from the installed tree serves the packaged web files" \
    grep -q "portal: [0-9]* files .* from /usr/sbin/../share/vdi/web and /usr/sbin/../share/vdi/novnc" "$T/vdid.log"
t_check "its admin socket answers vdictl" in_view vdictl status >/dev/null
t_check "the socket belongs to the group vdi, mode 0660" \
    test "$(in_view stat -c '%a %G' /run/vdi/vdid.sock)" = "660 vdi"
t_check "a member of vdi may use vdictl" in_view setpriv --reuid carol --regid carol --init-groups vdictl status >/dev/null
t_check "the state directory is still 0700" test "$(stat -c %a "$M/var/lib/vdi")" = 700
login alice Pw-of-alice-1 --type "hi" --hold 100
t_check "alice logs in through /etc/pam.d/vdi and gets a desktop (rc=$rc $out)" test "$rc" = 0
t_check "her keys reach it" grep -q "keys=hi" <<<"$out"
login alice wrong-password
t_check "a wrong password is refused (rc=$rc)" test "$rc" = 3
da=$(desktop_of alice)
t_check "alice owns a desktop" test -n "$da"
stop_vdid

# ---- upgrade, this time as if systemd ran: conffile and state kept, vdid restarted
mkdir -p "$M/run/systemd/system"
in_view dpkg -i "/tmp/$(basename "$deb2")" >"$T/dpkg-upgrade.log" 2>&1 ||
    t_fail "the upgrade failed: $(tail -n 5 "$T/dpkg-upgrade.log")"
t_check "the upgrade installs version $ver2" \
    test "$(in_view dpkg-query -W -f '${Version}' vdi)" = "$ver2"
t_check "the edited vdid.conf is kept as it was" cmp -s "$conf" "$T/vdid.conf.edited"
t_check "with no .dpkg-new or .dpkg-dist beside it" \
    test -z "$(find "$M/etc/vdi" -name '*.dpkg-*')"
t_check "postinst restarted vdid through systemd" grep -q "restart vdid.service" <<<"$(systemctl_log)"
t_check "the state database is kept" test -s "$M/var/lib/vdi/vdi.db"
start_vdid
t_check "vdid still knows alice's desktop" test "$(desktop_of alice)" = "$da"
login alice Pw-of-alice-1 --type "!" --hold 100
t_check "alice logs in again after the upgrade" test "$rc" = 0
t_check "to the same desktop (her earlier keys on its screen)" grep -q "keys=hi!" <<<"$out"
stop_vdid
stop_view # the desktop's VMM: vdid leaves desktops running when it stops

# ---- purge: nothing of the package is left
in_view dpkg --purge vdi >"$T/dpkg-purge.log" 2>&1 || t_fail "dpkg --purge failed: $(tail -n 5 "$T/dpkg-purge.log")"
t_check "prerm stopped vdid through systemd" grep -q "stop vdid.service" <<<"$(systemctl_log)"
t_check "dpkg no longer knows the package" \
    bash -c '! chroot "$1" dpkg-query -W -f "\${Status}" vdi 2>/dev/null | grep -q installed' _ "$M"
for p in /usr/sbin/vdid /usr/sbin/vdi-vmm /usr/bin/vdictl /lib/systemd/system/vdid.service \
    /etc/pam.d/vdi /etc/vdi /var/lib/vdi /run/vdi /usr/share/vdi /usr/share/doc/vdi \
    /usr/share/man/man8/vdid.8.gz /etc/systemd/system/multi-user.target.wants/vdid.service; do
    t_check "purge removed $p" test ! -e "$M$p" -a ! -L "$M$p"
done
t_check "the group vdi stays" in_view getent group vdi >/dev/null
# Every change the view gained since the package came (files, links, and deletions) is the
# suite's own: the users, the group, dpkg's records, what man cached when the suite ran it.
left=$(upper_files | LC_ALL=C comm -13 "$T/upper.before" - | grep -vxE \
    'etc/(passwd|group|shadow|gshadow|subuid|subgid)-?|etc/\.pwd\.lock|var/lib/dpkg/.*|var/log/(dpkg\.log|lastlog|faillog)|var/cache/debconf/.*|var/cache/man/.*' || true)
t_check "and nothing else is left behind${left:+: $(tr '\n' ' ' <<<"$left")}" test -z "$left"
t_done
