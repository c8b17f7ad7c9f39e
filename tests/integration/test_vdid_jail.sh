#!/usr/bin/env bash
# The VMM jail on a running vdid (server/jail.c, server/cgroup.c). The jail is vdid's, around
# whatever VMM it starts, so the stand-in VMM (tests/tools/vdid_fakevmm.c, FAKEVMM_TRIGGERS: hostile
# acts on request) shows it without KVM: each VMM runs under its own non-zero uid with no
# capabilities, no_new_privs and a seccomp filter; its mount namespace holds its own disk but not
# vdi.db, the TLS key, the config or another desktop's disk, and it cannot open them; a VMM that
# exceeds its memory limit is killed alone (the desktop failed, saying so, audited) while the
# others keep serving; a forbidden system call ends only that desktop; recycling removes its
# cgroup and jail directory; uids stay unique across a vdid restart; vmm_seccomp = log logs
# instead of killing.
# timeout: 150
. "$VDI_SRC/tests/lib.sh"
t_require_root
t_tmpdir
VDID=$VDI_BIN/vdid
VDICTL=$VDI_BIN/vdictl
FAKE=$VDI_BUILD/tests/tools/vdid_fakevmm
export VDI_ADMIN_SOCKET=$T/run/vdid.sock
[ -d /sys/fs/cgroup/memory ] || [ -f /sys/fs/cgroup/cgroup.controllers ] ||
    t_need "no cgroup memory controller on this machine"

kill_vmms() {
    t_kill_matching KILL "$FAKE .*--control $T/"
}
trap 'kill_vmms; t_cleanup' EXIT

t_import_fake_image
cat >"$T/vdid.conf" <<CONF
[vdid]
state_dir = $T/state
run_dir = $T/run
listen = 127.0.0.1:0
web_listen = off
vmm = $FAKE
memory_budget = 1G
vmm_uid_first = 4100000
vmm_uid_count = 16
vmm_memory_overhead = 16M
vdid_memory_max = 300M
vmm_env = FAKEVMM_TRIGGERS, FAKEVMM_ALLOC_MB

[pool lab]
image = testdesk
memory = 32M
min_spares = 2
CONF
export FAKEVMM_TRIGGERS=1 FAKEVMM_ALLOC_MB=512

count() { "$VDICTL" desktops list --json 2>/dev/null | grep -c "\"state\": \"$1\"" || true; }
field() {
    "$VDICTL" desktops show "$1" --json 2>/dev/null | sed -n "s/^ *\"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p"
}
ids() { "$VDICTL" desktops list --json --state "$1" | sed -n 's/^ *"id": \([0-9]*\),$/\1/p'; }
count_is() { test "$(count "$1")" = "$2"; }
field_is() { test "$(field "$1" "$2")" = "$3"; }
status_of() { sed -n "s/^$2:[[:space:]]*\([^[:space:]]*\).*/\1/p" "/proc/$1/status"; }
# memdir PID: the directory of the process's memory cgroup (v1, else v2)
memdir() {
    local c
    c=$(sed -n 's/^[0-9]*:memory:\(.*\)$/\1/p' "/proc/$1/cgroup")
    if [ -n "$c" ]; then echo "/sys/fs/cgroup/memory$c"; else echo "/sys/fs/cgroup$(sed -n 's/^0::\(.*\)$/\1/p' "/proc/$1/cgroup")"; fi
}
vmm_uids() { for p in $(pgrep -f "$FAKE .*--control $T/"); do status_of "$p" Uid; done | sort; }

# vdid's own environment (here a preload that does not exist, which the loader complains about
# on stderr, and a variable) must not reach the jail helper or the VMM.
LD_PRELOAD=$T/no-such-preload.so VDI_TEST_VDID_ONLY=secret t_bg "$VDID" -c "$T/vdid.conf" 2>"$T/vdid.log"
vdid=$!
t_check "two jailed spares become ready" t_wait_for 15 count_is ready 2
set -- $(ids ready)
d1=$1 d2=$2
p1=$(field "$d1" vmm_pid) p2=$(field "$d2" vmm_pid)

# ---- who the VMM is
u1=$(status_of "$p1" Uid) u2=$(status_of "$p2" Uid)
t_check "VMM 1 runs under a uid of the range ($u1)" test "$u1" -ge 4100000 -a "$u1" -lt 4100016
t_check "VMM 2 under another one ($u2)" test "$u2" -ge 4100000 -a "$u2" -lt 4100016 -a "$u2" != "$u1"
t_check "with its own gid" test "$(status_of "$p1" Gid)" = "$u1"
t_check "and a seccomp filter (Seccomp: 2)" test "$(status_of "$p1" Seccomp)" = 2
t_check "and no_new_privs" test "$(status_of "$p1" NoNewPrivs)" = 1
t_check "and no effective capabilities" test "$(status_of "$p1" CapEff)" = 0000000000000000
t_check "and an empty bounding set" test "$(status_of "$p1" CapBnd)" = 0000000000000000
t_check "vdi-jail ran without vdid's environment (no LD_PRELOAD in the VMM's log)" \
    bash -c '! grep -q no-such-preload "$1"' _ "$T/state/desktops/$d1/vmm.log"
t_check "nor has the VMM it" bash -c '! tr "\0" "\n" <"/proc/$1/environ" | grep -q "VDI_TEST_VDID_ONLY\|LD_PRELOAD"' _ "$p1"
vdidmem=$(memdir "$vdid")
t_check "vdid runs in a memory cgroup of its own ($vdidmem)" grep -q '/vdid$' <<<"$vdidmem"
t_check "capped at vdid_memory_max" test "$(cat "$vdidmem/memory.limit_in_bytes" 2>/dev/null || cat "$vdidmem/memory.max")" = $((300 << 20))
t_check "in its own mount namespace" test "$(readlink /proc/$p1/ns/mnt)" != "$(readlink /proc/self/ns/mnt)"
t_check "and its own network namespace" test "$(readlink /proc/$p1/ns/net)" != "$(readlink /proc/self/ns/net)"

# ---- what it can see and open
root1=/proc/$p1/root
t_check "its own disk is in its namespace" test -e "$root1$T/state/desktops/$d1/disk.qcow2"
t_check "vdi.db is not" test ! -e "$root1$T/state/vdi.db"
t_check "the TLS key is not" test ! -e "$root1$T/state/tls"
t_check "the config is not" test ! -e "$root1$T/vdid.conf"
t_check "the other desktop's disk is not" test ! -e "$root1$T/state/desktops/$d2/disk.qcow2"
t_check "the other desktop's sockets are not" test ! -e "$root1$T/run/vm/$d2/control.sock"
printf '%s\n' "$T/state/desktops/$d1/disk.qcow2" "$T/state/vdi.db" "$T/state/desktops/$d2/disk.qcow2" \
    "$T/state/tls/key.pem" "/etc/shadow" "$T/vdid.conf" >"$T/run/vm/$d1/peek.list"
touch "$T/run/vm/$d1/peek"
t_check "the VMM reports what it could open" t_wait_for 5 test -s "$T/run/vm/$d1/peek.out"
peek=$(cat "$T/run/vm/$d1/peek.out")
t_check "it opens its own disk" grep -q "desktops/$d1/disk.qcow2 opened" <<<"$peek"
t_check "it cannot open vdi.db" grep -q "state/vdi.db No such file" <<<"$peek"
t_check "nor the other desktop's disk" grep -q "desktops/$d2/disk.qcow2 No such file" <<<"$peek"
t_check "nor the TLS key" grep -q "key.pem No such file" <<<"$peek"
t_check "nor /etc/shadow" grep -q "/etc/shadow No such file" <<<"$peek"
t_check "nor the config" grep -q "vdid.conf No such file" <<<"$peek"
t_check "the desktop's disk belongs to its uid" test "$(stat -c %u "$T/state/desktops/$d1/disk.qcow2")" = "$u1"
t_check "its vmm.log stays root's" test "$(stat -c %u:%a "$T/state/desktops/$d1/vmm.log")" = 0:600

# ---- memory limit: the VMM that exceeds it is killed, nothing else
cg1=$(memdir "$p1")
lim=$(cat "$cg1/memory.limit_in_bytes" 2>/dev/null || cat "$cg1/memory.max")
t_check "its cgroup is its own ($cg1)" grep -q "desktop-$d1\$" <<<"$cg1"
t_check "with memory limit guest + overhead = 48 MiB ($lim)" test "$lim" = $((48 << 20))
touch "$T/run/vm/$d1/alloc"
t_check "the VMM over its limit is killed and its desktop failed" t_wait_for 15 field_is "$d1" state failed
t_check "saying why" bash -c '"$1" desktops show "$2" | grep -q "killed at its memory limit (48 MiB)"' _ "$VDICTL" "$d1"
t_check "audited" bash -c '"$1" audit tail -n 50 | grep -q "desktop.oom .*desktop=$2"' _ "$VDICTL" "$d1"
t_check "the other desktop is still ready" field_is "$d2" state ready
t_check "its VMM still runs" kill -0 "$p2"
t_check "the admin socket still answers" "$VDICTL" status
t_check "a new spare replaces the failed one" t_wait_for 15 count_is ready 2
t_check "the failed desktop's cgroup is gone" test ! -e "$cg1"

# ---- a forbidden system call ends that desktop alone
touch "$T/run/vm/$d2/syscall"
t_check "a VMM calling mount(2) is killed" t_wait_for 10 field_is "$d2" state failed
t_check "by seccomp (SIGSYS)" bash -c '"$1" desktops show "$2" | grep -q "signal 31 (Bad system call)"' _ "$VDICTL" "$d2"
t_check "spares back to two" t_wait_for 15 count_is ready 2

# ---- recycle removes what the jail made
d3=$(ids ready | head -n1)
p3=$(field "$d3" vmm_pid)
cg3=$(memdir "$p3")
"$VDICTL" desktops recycle "$d3" >/dev/null
t_check "a recycled jailed desktop ends gone" t_wait_for 10 field_is "$d3" state gone
t_check "its jail directory is removed" test ! -e "$T/run/jail/$d3"
t_check "its cgroup is removed ($cg3)" test ! -e "$cg3"
t_check "spares back to two again" t_wait_for 15 count_is ready 2

# ---- a restart keeps uids unique
kill -TERM "$vdid"; wait "$vdid"
set -- $(ids ready 2>/dev/null)
t_bg "$VDID" -c "$T/vdid.conf" 2>>"$T/vdid.log"
vdid=$!
t_check "restarted vdid answers" t_wait_for 10 test -S "$VDI_ADMIN_SOCKET"
t_check "both spares are ready again" t_wait_for 10 count_is ready 2
d4=$(ids ready | head -n1)
"$VDICTL" desktops recycle "$d4" >/dev/null
t_check "after a recycle a new spare starts" t_wait_for 15 count_is ready 2
t_check "every VMM has a uid of its own ($(vmm_uids | tr '\n' ' '))" test "$(vmm_uids | uniq -d)" = ""
t_check "and two VMMs run" test "$(vmm_uids | wc -l)" = 2
kill -TERM "$vdid"; wait "$vdid"
kill_vmms

# ---- vmm_seccomp = log: the call is logged and refused by the kernel, the desktop lives on
sed -i 's/^vmm_memory_overhead = 16M/vmm_memory_overhead = 16M\nvmm_seccomp = log/' "$T/vdid.conf"
t_bg "$VDID" -c "$T/vdid.conf" 2>>"$T/vdid.log"
vdid=$!
t_check "spares ready with seccomp in log mode" t_wait_for 15 count_is ready 2
d5=$(ids ready | head -n1)
touch "$T/run/vm/$d5/syscall"
t_check "the VMM tried its mount(2)" t_wait_for 5 grep -q "mount(2) returned" "$T/state/desktops/$d5/vmm.log"
t_check "and its desktop is still ready" field_is "$d5" state ready
kill -TERM "$vdid"; wait "$vdid"
t_done
