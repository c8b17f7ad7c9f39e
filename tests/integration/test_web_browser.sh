#!/usr/bin/env bash
# The web portal end to end in a real browser: headless Chromium (Debian's chromium) driven by
# playwright-core (tests/browser/portal.mjs) against vdid with real PAM (pam_wrapper +
# pam_matrix). With /dev/kvm the desktop is a real vdi-vmm booting testdesk from the image
# catalogue, and the browser must show testdesk's colour bars and the keys it types; without it
# (and without VDI_REQUIRE_KVM) the stand-in VMM's screen and keys. Both: wrong password shown,
# connect through noVNC over wss, Ctrl-Alt-Del, a reused and an expired console token refused,
# takeover message, reconnect, a desktop that dies under the viewer, log out, a phone-sized layout, the admin view for the admin group, and an image
# patched from it (the script's text, its output followed, the pool's rollout shown). VDI_WEB_FAKE_VMM=1 forces the
# stand-in VMM.
# timeout: 240
. "$VDI_SRC/tests/lib.sh"
t_tmpdir
VDID=$VDI_BIN/vdid
VDICTL=$VDI_BIN/vdictl
FAKE=$VDI_BUILD/tests/tools/vdid_fakevmm
NPM=$VDI_SRC/deploy/deps/npm
export VDI_ADMIN_SOCKET=$T/run/vdid.sock

[ -x /usr/bin/chromium ] || t_need "chromium missing (deploy/deps/web.txt)"
command -v node >/dev/null || t_need "node missing (deploy/deps/web.txt)"
[ -f "$NPM/node_modules/playwright-core/index.mjs" ] || t_need "playwright-core missing: run deploy/install-deps.sh"
t_require_pam_wrapper nss

if [ -z "${VDI_WEB_FAKE_VMM:-}" ] && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    mode=testdesk
    ELF=${VDI_TESTDESK_ELF:-$VDI_SRC/build/testdesk/testdesk.elf}
    DISK=$VDI_SRC/build/testdesk/system.qcow2
    [ -f "$ELF" ] && [ -f "$DISK" ] || t_fail "$ELF or $DISK missing (make build-tests builds them)"
    vmm_line=""
    fb=640x480
    mem=128M
else
    [ "${VDI_REQUIRE_KVM:-0}" = 1 ] && [ -z "${VDI_WEB_FAKE_VMM:-}" ] && t_fail "/dev/kvm is not usable"
    echo "# no /dev/kvm: the stand-in VMM serves the desktop (no colour bars)"
    mode=fake
    vmm_line="vmm = $FAKE"
    fb=320x240
    mem=64M
fi
kill_vmms() {
    t_kill_matching KILL "(vdi-vmm|vdid_fakevmm) .*--control $T/"
}
trap 'kill_vmms; [ -n "${KEEP:-}" ] && cp -r "$T" "$KEEP"; t_cleanup' EXIT

mkdir -p "$T/pam" "$T/out"
printf 'alice:pw-alice-7:vdi\nroot2:pw-root2-9:vdi\n' >"$T/pam/passdb"
printf 'alice:x:3001:3001:alice:/nonexistent:/bin/false\nroot2:x:3002:3002:root2:/nonexistent:/bin/false\n' >"$T/pam/passwd"
printf 'alice:x:3001:\nroot2:x:3002:\nvdi:x:2000:root2\n' >"$T/pam/group"
printf 'auth required %s passdb=%s\naccount required %s passdb=%s\n' \
    "$libdir/pam_wrapper/pam_matrix.so" "$T/pam/passdb" "$libdir/pam_wrapper/pam_matrix.so" "$T/pam/passdb" >"$T/pam/vdi"

if [ $mode = testdesk ]; then
    "$VDICTL" image import testdesk "$DISK" --kernel "$ELF" --state "$T/state" -q >/dev/null ||
        t_fail "vdictl image import failed"
else
    # big enough for testdesk's data area (4 MiB + 64 KiB): the admin view patches it
    truncate -s 8M "$T/disk.raw"
    echo "not a kernel" >"$T/kernel"
    "$VDICTL" image import testdesk "$T/disk.raw" --kernel "$T/kernel" --state "$T/state" -q >/dev/null ||
        t_fail "vdictl image import failed"
fi
ttl=3
cat >"$T/vdid.conf" <<CONF
[vdid]
state_dir = $T/state
run_dir = $T/run
listen = 127.0.0.1:0
web_listen = 127.0.0.1:0
web_token_ttl = $ttl
$vmm_line
memory_budget = 4G

[pool lab]
image = testdesk
memory = $mem
max_desktops = 2
framebuffer = $fb
users = alice
disconnect_timeout = 60
# The admin view's patch moves the pool at once; alice's desktop after a warning (her viewer
# shows it) and a grace longer than the test.
canary_percent = 100
health_window = 0
logoff = force
logoff_grace = 300
CONF

# (The DEEPBIND switches and the ASan option matter only in sanitizer builds.)
LD_PRELOAD="$libdir/libpam_wrapper.so:$libdir/libnss_wrapper.so" PAM_WRAPPER=1 \
UID_WRAPPER_DISABLE_DEEPBIND=1 PAM_WRAPPER_DISABLE_DEEPBIND=1 NSS_WRAPPER_DISABLE_DEEPBIND=1 \
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
PAM_WRAPPER_SERVICE_DIR="$T/pam" NSS_WRAPPER_PASSWD="$T/pam/passwd" \
NSS_WRAPPER_GROUP="$T/pam/group" t_bg "$VDID" -c "$T/vdid.conf" 2>>"$T/vdid.log"
vdid=$!
t_wait_for 15 grep -q 'web portal listening' "$T/vdid.log" || t_fail "vdid did not start: $(tail -5 "$T/vdid.log")"
port=$(sed -n 's/.*web portal listening on .* port \([0-9]*\).*/\1/p' "$T/vdid.log" | tail -n1)
spki=$(openssl x509 -in "$T/state/tls/cert.pem" -pubkey -noout | openssl pkey -pubin -outform der |
    openssl dgst -sha256 -binary | base64)

# When the browser asks (tests/browser/portal.mjs writes out/kill-now), kill its desktop's VMM.
( t_wait_for 150 test -e "$T/out/kill-now" &&
    for p in $(pgrep -f "(vdi-vmm|vdid_fakevmm) .*--control $T/" || true); do kill -9 "$p"; done ) &
killer=$!
VDI_WEB_URL=https://localhost:$port VDI_WEB_SPKI=$spki VDI_WEB_USER=alice VDI_WEB_PASSWORD=pw-alice-7 \
VDI_WEB_ADMIN=root2 VDI_WEB_ADMIN_PASSWORD=pw-root2-9 \
VDI_WEB_FB=$fb VDI_WEB_MODE=$mode VDI_WEB_TOKEN_TTL=$ttl VDI_WEB_OUT=$T/out VDI_NPM_DIR=$NPM \
    timeout 200 node "$VDI_SRC/tests/browser/portal.mjs" | tee "$T/browser.out"
kill "$killer" 2>/dev/null
t_check "the browser checks passed (mode $mode)" grep -q '^all [0-9]* browser checks passed' "$T/browser.out"
t_check "the console sessions were recorded" bash -c '"$1" sessions list --all | grep -q alice' _ "$VDICTL"
kill -TERM "$vdid"; wait "$vdid"
t_check "vdid stopped cleanly" test $? = 0
t_done
