#!/usr/bin/env bash
# Central patching through vdid (server/patch.c) with the stand-in VMM, which runs testdesk's own
# patch agent (golden-images/testdesk/patch.c) on the real disks vdid gives it: `vdictl image
# patch` makes the next version as an overlay, boots a jailed maintenance VM with the bundle on
# a read-only disk, streams its output, and publishes (and makes current) only a patch that
# exited 0 on a disk that passes check. New desktops see the patch, old ones only once recycled;
# a failing patch publishes nothing and says why with its last lines; a hanging one is stopped
# at its deadline; one patch per image at a time; a bundle directory with files, --flatten;
# a symlink in a bundle is refused; a patch cut off by a vdid restart is recorded as failed and
# cleaned up; a version in use cannot be removed.
# timeout: 150
. "$VDI_SRC/tests/lib.sh"
t_tmpdir
VDID=$VDI_BIN/vdid
VDICTL=$VDI_BIN/vdictl
FAKE=$VDI_BUILD/tests/tools/vdid_fakevmm
# The admin socket where an admin who is not root (uid 4242 in group users) reaches it.
mkdir -m 0711 "$T/adm"
export VDI_ADMIN_SOCKET=$T/adm/vdid.sock VDI_STATE_DIR=$T/state
trap 't_kill_matching KILL "$FAKE .*--control $T/"; t_cleanup' EXIT

# An image whose disk is big enough for testdesk's data area (4 MiB + 64 KiB).
truncate -s 8M "$T/disk.raw"
echo "not a kernel" >"$T/kernel"
"$VDICTL" image import testdesk "$T/disk.raw" --kernel "$T/kernel" -q >/dev/null || t_fail "import failed"
cat >"$T/vdid.conf" <<CONF
[vdid]
state_dir = $T/state
run_dir = $T/run
listen = 127.0.0.1:0
web_listen = off
vmm = $FAKE
memory_budget = 2G
vmm_uid_first = 4200000
vmm_uid_count = 16
log_level = debug
admin_socket = $T/adm/vdid.sock
admin_group = users

[pool lab]
image = testdesk
memory = 64M
min_spares = 1
CONF
start_vdid() { t_bg "$VDID" -c "$T/vdid.conf" 2>>"$T/vdid.log"; vdid=$!; }
start_vdid
ids() { "$VDICTL" desktops list --json --state "$1" 2>/dev/null | sed -n 's/^ *"id": \([0-9]*\),$/\1/p'; }
ready_one() { [ -n "$(ids ready)" ]; }
current() { "$VDICTL" image list --json | python3 -c 'import json,sys; print([i["current"] for i in json.load(sys.stdin) if i["name"]=="testdesk"][0])'; }
vlog() { cat "$T/state/desktops/$1/vmm.log" 2>/dev/null; }
t_check "a spare on version 1 is ready" t_wait_for 15 ready_one
old=$(ids ready)
t_check "version 1 is current" test "$(current)" = 1

# ---- a good patch, from a script
cat >"$T/good.run" <<'S'
#!testdesk-patch
echo applying security update 42
banner Patched v2
write motd patched by vdid
S
out=$("$VDICTL" image patch testdesk --script "$T/good.run" --notes "security update 42" 2>&1); rc=$?
echo "$out" | sed 's/^/# /'
t_check "image patch exits 0" test "$rc" = 0
t_check "the patch's output is streamed" grep -q "^applying security update 42" <<<"$out"
t_check "the agent's lines too" grep -qF 'patch: banner set to "Patched v2"' <<<"$out"
t_check "it says what it published" grep -q "version 2 published and made current" <<<"$out"
t_check "version 2 is current" test "$(current)" = 2
man=$("$VDICTL" image show testdesk@2 --json)
t_check "the manifest keeps the patch's exit status and output" \
    python3 -c 'import json,sys; m=json.load(sys.stdin); p=m["manifest"]["patch"] if "manifest" in m else m["patch"]; assert p["exit"]==0 and "PATCH EXIT 0" in p["output"] and p["id"]=="p1", p' <<<"$man"
t_check "the manifest keeps the notes" grep -q "security update 42" <<<"$man"
t_check "version 2 is an overlay on version 1" grep -q '"backing_version": 1' <<<"$man"
t_check "the maintenance VM ran jailed (its pid file named a process of a non-root uid)" \
    grep -q "maintenance VM pid=[0-9]* uid=42000[0-9][0-9]" "$T/vdid.log"
t_check "the patch's disks are gone, its log is kept" \
    bash -c '[ ! -e "$1/disk.qcow2" ] && [ ! -e "$1/bundle.tar" ] && grep -q "PATCH EXIT 0" "$1/output.log"' _ "$T/state/patches/p1"
audit=$("$VDICTL" audit tail -n 50)
t_check "audited: start and publish" bash -c 'grep -q image.patch.start <<<"$1" && grep -q "image.patch.published.*version 2" <<<"$1"' _ "$audit"
t_check "the desktop made before the patch does not see it" bash -c '! grep -q "TESTDESK BANNER" <<<"$1"' _ "$(vlog "$old")"
# The pool follows the current version (server/rollout.c; test_vdid_rollout.sh): its one idle
# desktop is the canary, recycled at once.
new_ready() { local d; d=$(ids ready); [ -n "$d" ] && [ "$d" != "$old" ]; }
t_check "the pool's rollout replaces the old spare by a new one" t_wait_for 15 new_ready
new=$(ids ready)
t_check "the new desktop boots version 2 and shows the banner" t_wait_for 5 \
    bash -c 'grep -q "TESTDESK BANNER Patched v2" "$1"' _ "$T/state/desktops/$new/vmm.log"
t_check "and the file the patch wrote" grep -q "testdesk: file motd size=15" "$T/state/desktops/$new/vmm.log"

# ---- a failing patch publishes nothing
printf 'echo step one\necho step two\nexit 3\n' >"$T/fail.run"
out=$("$VDICTL" image patch testdesk --script "$T/fail.run" 2>&1); rc=$?
echo "$out" | sed "s/^/# /"
t_check "a failing patch: exit 1" test "$rc" = 1
t_check "it says the patch exited 3" grep -q "failed: the patch exited 3" <<<"$out"
t_check "with the last lines of its output" grep -q "^step two" <<<"$out"
t_check "no new version: 2 is still current" test "$(current)" = 2
t_check "and there is no version 3" bash -c '! "$1" image show testdesk@3 >/dev/null 2>&1' _ "$VDICTL"
t_check "the failure is audited" bash -c '"$1" audit tail -n 50 | grep -q "image.patch.failed.*exited 3"' _ "$VDICTL"

# ---- a hanging patch is stopped at its deadline; one patch per image at a time
printf 'echo about to hang\nhang\n' >"$T/hang.run"
out=$("$VDICTL" image patch testdesk --script "$T/hang.run" --deadline 4 --no-wait 2>&1)
hid=$(sed -n 's/^patch \(p[0-9]*\) started.*/\1/p' <<<"$out")
t_check "a patch started without waiting gives its id" test -n "$hid"
out=$("$VDICTL" image patch testdesk --script "$T/good.run" 2>&1); rc=$?
t_check "a second patch of the image is refused" test "$rc" = 1
t_check "naming the running one" grep -q "patch $hid is already running" <<<"$out"
hpid() { cat "$T/state/patches/$hid/pid" 2>/dev/null; }
t_check "the hanging VM runs" t_wait_for 5 bash -c '[ -n "$(cat "$1" 2>/dev/null)" ]' _ "$T/state/patches/$hid/pid"
vmpid=$(hpid)
failed_hang() { "$VDICTL" image patches "$hid" 2>/dev/null | grep -q " failed "; }
t_check "it fails at its deadline" t_wait_for 15 failed_hang
out=$("$VDICTL" image patches "$hid")
t_check "saying so" grep -q "did not finish within its deadline of 4 s" <<<"$out"
t_check "with its output" grep -q "about to hang" <<<"$out"
t_check "its VM is gone" bash -c '! kill -0 "$1" 2>/dev/null' _ "$vmpid"
t_check "still version 2" test "$(current)" = 2

# ---- a bundle directory with a file, flattened
mkdir -p "$T/bundle/docs"
printf '#!/bin/sh\n# testdesk reads this as its own script\nbanner Patched v3\ncopy docs/notes.txt notes\n' >"$T/bundle/run"
chmod +x "$T/bundle/run"
printf 'shipped in the bundle\n' >"$T/bundle/docs/notes.txt"
out=$("$VDICTL" image patch testdesk --bundle "$T/bundle" --flatten 2>&1); rc=$?
echo "$out" | sed 's/^/# /'
t_check "a bundle patch with --flatten is published" test "$rc" = 0
t_check "the bundle's file was copied" grep -qF "patch: copied docs/notes.txt to notes (22 bytes)" <<<"$out"
t_check "version 3 is current" test "$(current)" = 3
t_check "flattened: version 3 stands alone" bash -c '"$1" image show testdesk@3 --json | grep -q "\"backing_version\": null"' _ "$VDICTL"
t_check "qemu-img agrees: no backing file" bash -c '! qemu-img info "$1" | grep -q "backing file"' _ "$T/state/images/testdesk/v3/disk.qcow2"

ln -s /etc/shadow "$T/bundle/secret"
out=$("$VDICTL" image patch testdesk --bundle "$T/bundle" 2>&1); rc=$?
t_check "a symlink in the bundle is refused" bash -c '[ "$1" = 1 ] && grep -q "secret is a symbolic link" <<<"$2"' _ "$rc" "$out"
rm "$T/bundle/secret"
chmod -x "$T/bundle/run"
out=$("$VDICTL" image patch testdesk --bundle "$T/bundle" 2>&1)
t_check "a bundle whose run is not executable is refused" grep -q "run must be an executable" <<<"$out"

# ---- vdid stops while a patch runs
out=$("$VDICTL" image patch testdesk --script "$T/hang.run" --deadline 60 --no-wait 2>&1)
rid=$(sed -n 's/^patch \(p[0-9]*\) started.*/\1/p' <<<"$out")
t_check "the cut-off patch's VM runs" t_wait_for 5 bash -c '[ -n "$(cat "$1" 2>/dev/null)" ]' _ "$T/state/patches/$rid/pid"
rpid=$(cat "$T/state/patches/$rid/pid")
kill -TERM "$vdid"
t_check "vdid stops" t_wait_for 10 bash -c '! kill -0 "$1" 2>/dev/null' _ "$vdid"
t_check "and the maintenance VM with it" t_wait_for 5 bash -c '! kill -0 "$1" 2>/dev/null' _ "$rpid"
start_vdid
t_check "vdid is back" t_wait_for 10 "$VDICTL" status
out=$("$VDICTL" image patches "$rid")
t_check "the cut-off patch is recorded as failed" grep -q "vdid stopped while the patch ran" <<<"$out"
t_check "its overlay is gone" test ! -e "$T/state/patches/$rid/disk.qcow2"
t_check "it holds no reference on the image" bash -c '! ls "$1"/v*/refs/ 2>/dev/null | grep -q patch-' _ "$T/state/images/testdesk"
t_check "the history survives the restart" bash -c '"$1" image patches | grep -q "^p1 .*published"' _ "$VDICTL"

# ---- a version in use cannot be removed
out=$("$VDICTL" image remove testdesk 1 2>&1); rc=$?
t_check "version 1 (under version 2, which a desktop uses) is not removed" test "$rc" != 0
echo "# $out"
t_check "the refusal says why" grep -qiE "in use|used by|desktop|later version" <<<"$out"

# ---- an admin who is not root: vdid reads their script only where they could read it
chmod 0711 "$T"
printf 'echo read by uid 4242\nexit 0\n' >"$T/adm/public.run"
chmod 0644 "$T/adm/public.run"
printf 'echo the root-only script\nexit 0\n' >"$T/adm/secret.run"
chmod 0600 "$T/adm/secret.run"
as_admin() { setpriv --reuid=4242 --regid=100 --clear-groups "$VDICTL" "$@"; }
out=$(as_admin image patch testdesk --script "$T/adm/secret.run" 2>&1); rc=$?
echo "$out" | sed 's/^/# /'
t_check "a script its admin cannot read is refused (exit $rc)" test "$rc" = 1
t_check "saying so" grep -q "secret.run: permission denied for uid 4242" <<<"$out"
t_check "and nothing of it reached a bundle" bash -c '! grep -rqs "the root-only script" "$1"/patches/*/bundle.tar "$1"/patches/*/output.log' _ "$T/state"
ln -s "$T/adm/secret.run" "$T/adm/link.run"
out=$(as_admin image patch testdesk --script "$T/adm/link.run" 2>&1)
t_check "nor through a symlink to it" grep -q "permission denied for uid 4242" <<<"$out"
mkdir -m 0755 "$T/adm/b"
cp "$T/adm/public.run" "$T/adm/b/run"; chmod 0755 "$T/adm/b/run"
cp "$T/adm/secret.run" "$T/adm/b/notes"
out=$(as_admin image patch testdesk --bundle "$T/adm/b" 2>&1)
t_check "nor as a file of a bundle directory" grep -q "b/notes: permission denied for uid 4242" <<<"$out"
out=$(as_admin image patch testdesk --script "$T/adm/public.run" 2>&1); rc=$?
t_check "a script its admin can read is patched in (exit $rc)" test "$rc" = 0
t_check "its output streamed" grep -q "^read by uid 4242" <<<"$out"
t_done
