# tests/integration/restart_provisioning.sh: sourced by the vdid suites (stand-in VMM and real
# vdi-vmm alike). restart_while_provisioning VMM_PATH: with vdid running on "$T/vdid.conf"
# (ready_timeout short, one spare, no vdid running yet), stop vdid while its spare's VMM is
# still provisioning (the VMM is frozen with SIGSTOP the moment it exists, so it cannot become
# ready first), let the VMM become ready while vdid is down, start vdid again and check that the
# desktop is ready, keeps its VMM, and is still ready after ready_timeout has passed.
# Needs: VDID T field field_is t_bg t_check t_wait_for kill_vmms.
restart_while_provisioning() {
    local vmm=$1 d pid rt
    rt=$(sed -n 's/^ready_timeout = *\([0-9]*\)/\1/p' "$T/vdid.conf")
    [ -n "$rt" ] || t_fail "restart_while_provisioning: no ready_timeout in $T/vdid.conf"
    t_bg "$VDID" -c "$T/vdid.conf" 2>>"$T/vdid.log"
    vdid=$!
    pid=
    for _ in $(seq 1 2000); do
        pid=$(pgrep -f "$vmm .*--control $T/" | head -n1)
        [ -n "$pid" ] && break
        sleep 0.005
    done
    [ -n "$pid" ] || t_fail "no VMM started for the spare"
    kill -STOP "$pid"
    d=$(tr '\0' ' ' <"/proc/$pid/cmdline" | sed -n "s|.*--control $T/run/vm/\([0-9]*\)/control.sock.*|\1|p")
    [ -n "$d" ] || t_fail "cannot tell the desktop of VMM $pid"
    t_check "the spare is provisioning when vdid stops" field_is "$d" state provisioning
    kill -TERM "$vdid"; wait "$vdid"
    kill -CONT "$pid"
    sleep 2 # the VMM gets ready with nobody listening
    t_bg "$VDID" -c "$T/vdid.conf" 2>>"$T/vdid.log"
    vdid=$!
    t_check "after the restart the desktop is ready" t_wait_for 5 field_is "$d" state ready
    sleep $((rt + 1))
    t_check "and still ready after ready_timeout (${rt}s)" field_is "$d" state ready
    t_check "on the same VMM" test "$(field "$d" vmm_pid)" = "$pid"
    t_check "which still runs" kill -0 "$pid"
    kill -TERM "$vdid"; wait "$vdid"
    kill_vmms
}
