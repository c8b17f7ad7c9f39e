#!/usr/bin/env bash
# vdid without desktops: configuration errors name the line, the admin socket is private and
# answers vdictl, bad admin input gets clear errors (and the daemon lives on), a peer that is
# neither root nor in the admin group is refused by its credentials even when the socket's mode
# would let it in (and a member gets in), one vdid per state directory, SIGTERM stops it cleanly,
# the state directory is 0700 and vdi.db (and its WAL files) 0600 even when they were looser
# before a start.
# timeout: 60
. "$VDI_SRC/tests/lib.sh"
t_tmpdir
VDID=$VDI_BIN/vdid
VDICTL=$VDI_BIN/vdictl
SOCKCAT=$VDI_BUILD/tests/tools/vdid_sockcat

# ---- configuration errors
printf '[vdid]\nstate_dir = %s/state\n\n[pool lab]\nimage = testdesk\nvcpu = 2\n' "$T" >"$T/bad.conf"
out=$("$VDID" --check-config -c "$T/bad.conf" 2>&1); rc=$?
t_check "bad key: exit 1" test "$rc" = 1
t_check "bad key: names file, line and key" grep -qF "$T/bad.conf:6: unknown key 'vcpu' in [pool lab]" <<<"$out"
printf '[pool lab]\nimage = testdesk\nmemory = lots\n' >"$T/bad2.conf"
out=$("$VDID" -c "$T/bad2.conf" 2>&1); rc=$?
t_check "bad value: vdid does not start" test "$rc" = 1
t_check "bad value: names the line and the value" grep -qF "bad2.conf:3: memory: 'lots' is not a size" <<<"$out"
out=$("$VDID" -c "$T/missing.conf" 2>&1)
t_check "missing config: named" grep -qF "$T/missing.conf: cannot open: No such file" <<<"$out"
# A listen address is read one way by the check and by the listeners: names other than localhost
# are refused by both, with the same message.
printf '[vdid]\nlisten = desktop.example:5900\n' >"$T/bad3.conf"
out=$("$VDID" --check-config -c "$T/bad3.conf" 2>&1); rc=$?
t_check "host name in listen: --check-config refuses it" test "$rc" = 1
t_check "and says what HOST may be" grep -qF "bad3.conf:2: listen: 'desktop.example:5900' is not HOST:PORT (HOST an IPv4 address, [IPv6 address] or localhost" <<<"$out"
out2=$("$VDID" -c "$T/bad3.conf" 2>&1); rc=$?
t_check "host name in listen: vdid does not start either, with the same message" \
    bash -c '[ "$1" = 1 ] && grep -qF "$2" <<<"$3"' _ "$rc" "$out" "$out2"

# ---- a running vdid
cat >"$T/vdid.conf" <<CONF
[vdid]
state_dir = $T/state
run_dir = $T/run
listen = localhost:0
web_listen = 127.0.0.1:0
memory_budget = 4G
log_level = debug

[pool lab]
image = testdesk
users = alice, bob
memory = 128M
[pool office]
image = testdesk
type = dedicated
groups = staff
CONF
t_check "good config passes --check-config" "$VDID" --check-config -c "$T/vdid.conf"
# a state directory made by someone else, readable by all: vdid takes it and tightens it
mkdir -m 0755 "$T/state"
t_bg "$VDID" -c "$T/vdid.conf" 2>"$T/vdid.log"
pid=$!
sock=$T/run/vdid.sock
t_check "admin socket appears" t_wait_for 10 test -S "$sock"
if getent group vdi >/dev/null; then # the default admin_group exists on this host
    t_check "admin socket is mode 0660, group vdi" test "$(stat -c %a:%G "$sock")" = 660:vdi
else
    t_check "admin socket is mode 0600" test "$(stat -c %a "$sock")" = 600
fi
t_check "state database created" test -f "$T/state/vdi.db"
# listen = localhost:0 passed --check-config above; vdid binds it on the loopback address.
port=$(sed -n 's/.*RFB gateway listening on localhost port \([0-9]*\).*/\1/p' "$T/vdid.log")
t_check "listen = localhost:0: the gateway listens" test -n "$port"
t_check "on 127.0.0.1" bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$port"
mode_is() { test "$(stat -c %a "$1")" = "$2"; }
t_check "a 0755 state directory is made 0700" mode_is "$T/state" 700
t_check "and the log says so" grep -q "path=$T/state mode was 0755: set to 0700" "$T/vdid.log"
t_check "vdi.db is made 0600" mode_is "$T/state/vdi.db" 600
t_check "vdi.db-wal is 0600" mode_is "$T/state/vdi.db-wal" 600
t_check "vdi.db-shm is 0600" mode_is "$T/state/vdi.db-shm" 600
export VDI_ADMIN_SOCKET=$sock

out=$("$VDICTL" status) || t_fail "vdictl status failed"
t_check "status shows the memory budget" grep -q "budget 4096M" <<<"$out"
out=$("$VDICTL" status --json) || t_fail "vdictl status --json failed"
t_check "status --json is JSON with the pid" grep -q "\"pid\": $pid" <<<"$out"
out=$("$VDICTL" pools) || t_fail "vdictl pools failed"
t_check "pools lists both pools" bash -c 'grep -q "^lab .*floating" <<<"$1" && grep -q "^office .*dedicated" <<<"$1"' _ "$out"
out=$("$VDICTL" pools list --json)
t_check "pools --json carries entitlements" grep -q '"staff"' <<<"$out"
out=$("$VDICTL" desktops list --json)
t_check "no desktops yet" test "$(tr -d ' \n' <<<"$out")" = "[]"
t_check "sessions list works" "$VDICTL" sessions list
t_check "sessions list --json works" "$VDICTL" sessions --json --all
t_check "audit tail works" "$VDICTL" audit tail -n 5
out=$("$VDICTL" desktops show 42 2>&1); rc=$?
t_check "show of a missing desktop fails" test "$rc" = 1
t_check "and says why" grep -qF "desktop 42: no such desktop" <<<"$out"
t_expect_exit 2 "vdictl rejects a bad id" "$VDICTL" desktops show abc
t_expect_exit 2 "vdictl rejects an unknown subcommand" "$VDICTL" desktops frob
t_expect_exit 1 "vdictl names an unreachable socket" "$VDICTL" -s "$T/nope.sock" status

# ---- bad admin input: each line gets an error reply, the connection and the daemon live on
out=$(printf '%s\n' 'nonsense' '[1,2]' '{"cmd":1}' '{"cmd":"frobnicate"}' \
        '{"cmd":"desktops.show","args":{"id":"x"}}' '{"cmd":"desktops.list","args":{"state":"zzz"}}' \
        '{"cmd":"status","args":[]}' '{"cmd":"status","cmd":"status"}' '{"cmd":"status"}' | "$SOCKCAT" "$sock")
t_check "nine requests, nine replies" test "$(wc -l <<<"$out")" = 9
t_check "invalid JSON is named" grep -q '"error": *"request is not valid JSON' <<<"$out"
t_check "non-object is refused" grep -q 'request must be a JSON object' <<<"$out"
t_check "missing cmd is named" grep -q 'request needs \\"cmd\\"' <<<"$out"
t_check "unknown command is named" grep -q "unknown command 'frobnicate'" <<<"$out"
t_check "bad argument type is named" grep -q "argument 'id' must be a whole number" <<<"$out"
t_check "bad state is named" grep -q "unknown state 'zzz'" <<<"$out"
t_check "bad args type is named" grep -q '\\"args\\" must be a JSON object' <<<"$out"
t_check "duplicate keys are refused" grep -q 'duplicate object key' <<<"$out"
t_check "a good request after bad ones works" bash -c 'tail -n1 <<<"$1" | grep -q "\"ok\": *true"' _ "$out"
out=$(head -c 200000 /dev/zero | tr '\0' 'x' | "$SOCKCAT" "$sock")
t_check "an overlong line is refused" grep -q 'request longer than 65536 bytes' <<<"$out"
head -c 100000 /dev/urandom | "$SOCKCAT" "$sock" >/dev/null
t_check "vdid survives garbage" kill -0 "$pid"
t_check "and still answers" "$VDICTL" status

# ---- peer credentials: the file mode is not the only gate
# as UID GID CMD...: run CMD with those ids and no supplementary groups.
as() { local u=$1 g=$2; shift 2; setpriv --reuid="$u" --regid="$g" --clear-groups "$@"; }
peercred=0
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && getent group nogroup >/dev/null; then
    peercred=1
elif t_ci_requires_deps; then
    t_fail "the peer-credential checks need root, setpriv and a nogroup group"
else
    t_log "skipping the peer-credential checks (they need root, setpriv and a nogroup group)"
fi
if [ $peercred = 1 ]; then
    chmod 711 "$T" "$T/run"
    chmod 666 "$sock" # so that what refuses is the credential check, not the file mode
    out=$(as 65534 65534 "$VDICTL" status 2>&1); rc=$?
    t_check "nobody is refused (exit 1)" test "$rc" = 1
    t_check "with a message that says why" grep -qE \
        "vdictl: status: permission denied: uid 65534 is (neither root nor a member of the admin group 'vdi'|not root \(no admin group exists: admin_group=vdi\))" <<<"$out"
    out=$(printf '{"cmd":"status"}\n' | as 65534 65534 "$SOCKCAT" "$sock")
    t_check "one error line, then the connection is closed" bash -c \
        '[ "$(wc -l <<<"$1")" = 1 ] && grep -q "\"ok\": *false" <<<"$1"' _ "$out"
    t_check "the refusal is logged" grep -q "refused uid=65534 gid=65534" "$T/vdid.log"
    out=$("$VDICTL" audit tail -n 5 --json)
    t_check "and audited" grep -q "admin.refused" <<<"$out"
    t_check "root still works" "$VDICTL" status
    t_check "vdid lives on" kill -0 "$pid"
fi

# ---- one vdid per state directory
out=$("$VDID" -c "$T/vdid.conf" 2>&1); rc=$?
t_check "a second vdid on the same state dir is refused" test "$rc" = 1
t_check "with a reason" grep -q "in use by another vdid" <<<"$out"
t_check "the first one still answers" "$VDICTL" status

# ---- stop and restart
kill -TERM "$pid"
wait "$pid"; rc=$?
t_check "SIGTERM: exit status 0" test "$rc" = 0
t_check "SIGTERM: admin socket removed" test ! -e "$sock"
t_check "log says it stopped" grep -q "stopping (SIGTERM)" "$T/vdid.log"
# an admin's copy or restore left the state readable by all: the restart tightens it again
chmod 0755 "$T/state"
chmod 0644 "$T/state/vdi.db"
t_bg "$VDID" -c "$T/vdid.conf" 2>>"$T/vdid.log"
pid=$!
t_check "restarts on the same state" t_wait_for 10 test -S "$sock"
t_check "and answers" "$VDICTL" status
t_check "restart: the state directory is 0700 again" mode_is "$T/state" 700
t_check "restart: vdi.db is 0600 again" mode_is "$T/state/vdi.db" 600
t_check "and the log says so" grep -q "path=$T/state/vdi.db mode was 0644: set to 0600" "$T/vdid.log"
t_check "restart: vdi.db-wal is 0600" mode_is "$T/state/vdi.db-wal" 600
t_check "restart: vdi.db-shm is 0600" mode_is "$T/state/vdi.db-shm" 600

# ---- members of the admin group get in, by their account's groups or their process's gid
if [ $peercred = 1 ]; then
    kill -TERM "$pid"
    wait "$pid"
    sed 's/^\[vdid\]$/&\nadmin_group = nogroup/' "$T/vdid.conf" >"$T/group.conf"
    t_bg "$VDID" -c "$T/group.conf" 2>>"$T/vdid.log"
    t_check "vdid starts with admin_group = nogroup" t_wait_for 10 test -S "$sock"
    t_check "the socket is mode 0660, group nogroup" test "$(stat -c %a:%G "$sock")" = 660:nogroup
    chmod 666 "$sock"
    t_check "nobody (nogroup is its account's group) gets in with no groups in its process" \
        as 65534 4242 "$VDICTL" status
    t_check "a uid whose process gid is nogroup gets in" as 4242 65534 "$VDICTL" status
    out=$(as 4242 4242 "$VDICTL" status 2>&1); rc=$?
    t_check "a uid in neither is refused" test "$rc" = 1
    t_check "naming the group" grep -qF \
        "permission denied: uid 4242 is neither root nor a member of the admin group 'nogroup'" <<<"$out"
    printf '[vdid]\nstate_dir = %s/state2\nrun_dir = %s/run2\nlisten = 127.0.0.1:0\n%s\n' \
        "$T" "$T" "web_listen = off
admin_group = no-such-group-here" >"$T/nogroup.conf"
    out=$("$VDID" -c "$T/nogroup.conf" 2>&1); rc=$?
    t_check "a named admin_group that does not exist stops vdid" test "$rc" = 1
    t_check "with a reason" grep -qF "admin_group=no-such-group-here: no such group" <<<"$out"
fi
t_done
