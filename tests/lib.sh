# tests/lib.sh: helpers for integration test scripts. Source it: . "$VDI_SRC/tests/lib.sh"
# Exit codes: 0 pass, 77 skip (with a "SKIP: reason" line), anything else fail.
set -u
VDI_SRC=${VDI_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
VDI_BIN=${VDI_BIN:-$VDI_SRC/build/bin}
VDI_BUILD=${VDI_BUILD:-$VDI_SRC/build/default}
VDI_TEST_TIMEOUT_MULT=${VDI_TEST_TIMEOUT_MULT:-1}
_t_checks=0

t_fail() { echo "FAIL: $*"; exit 1; }
t_skip() { echo "SKIP: $*"; exit 77; }
t_log() { echo "# $*"; }

# Two switches, both set by CI (.ci/run):
#   VDI_REQUIRE_DEPS=1  a missing test dependency (package, tool, root) fails instead of skipping;
#   VDI_REQUIRE_KVM=1   a missing /dev/kvm fails too (implies VDI_REQUIRE_DEPS=1). .ci/run sets it
#                       wherever the machine has /dev/kvm.
t_ci_requires_deps() { [ "${VDI_REQUIRE_DEPS:-0}" = 1 ] || [ "${VDI_REQUIRE_KVM:-0}" = 1 ]; }
# Skip when /dev/kvm is unusable, or fail when VDI_REQUIRE_KVM=1.
t_require_kvm() {
    if [ ! -c /dev/kvm ] || [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
        if [ "${VDI_REQUIRE_KVM:-0}" = 1 ]; then t_fail "/dev/kvm is missing or not accessible and VDI_REQUIRE_KVM=1"; fi
        t_skip "/dev/kvm is missing or not accessible"
    fi
}
t_require_root() {
    if [ "$(id -u)" != 0 ]; then
        if t_ci_requires_deps; then t_fail "needs root (CI requires every dependency)"; fi
        t_skip "needs root"
    fi
}
# t_need REASON: skip with REASON, or fail under VDI_REQUIRE_DEPS=1 (CI installs everything).
t_need() {
    if t_ci_requires_deps; then t_fail "$*"; fi
    t_skip "$*"
}
# t_require_pam_wrapper [nss]: set $libdir to the directory holding libpam_wrapper.so, with
# pam_wrapper/pam_matrix.so under it (and libnss_wrapper.so, given "nss"); t_need otherwise.
t_require_pam_wrapper() {
    local d
    libdir=
    for d in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 /usr/lib; do
        [ -r "$d/libpam_wrapper.so" ] && libdir=$d && break
    done
    if [ -z "$libdir" ] || [ ! -r "$libdir/pam_wrapper/pam_matrix.so" ]; then
        t_need "libpam-wrapper (pam_wrapper, pam_matrix) is not installed"
    fi
    if [ "${1:-}" = nss ] && [ ! -r "$libdir/libnss_wrapper.so" ]; then
        t_need "libnss-wrapper (nss_wrapper) is not installed"
    fi
}
# Hardware virtualisation (vmx/svm) is needed for full guest-kernel boots.
t_have_hw_virt() { grep -qE '\b(vmx|svm)\b' /proc/cpuinfo; }

# t_tmpdir: a fresh directory removed at exit.
t_tmpdir() {
    T=$(mktemp -d "${TMPDIR:-/tmp}/vdi-test.XXXXXX")
    trap 't_cleanup' EXIT
}
_t_pids=()
t_cleanup() {
    local p
    for p in "${_t_pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${_t_pids[@]}"; do wait "$p" 2>/dev/null; done
    [ -n "${T:-}" ] && [ -d "$T/state" ] && t_cgroups_cleanup "$T/state"
    [ -n "${T:-}" ] && rm -rf "$T"
}
# t_cgroups_cleanup STATE_DIR: remove the (empty) cgroups a jailing vdid on STATE_DIR left behind
# (server/cgroup.c names them vdi-FNV1A64(STATE_DIR)); call it once the test's VMMs are dead.
t_cgroups_cleanup() {
    local h=$((0xcbf29ce484222325)) i c d
    for ((i = 0; i < ${#1}; i++)); do
        printf -v c '%d' "'${1:i:1}"
        h=$(((h ^ (c & 255)) * 0x100000001b3))
    done
    printf -v h 'vdi-%016x' "$h"
    for i in 1 2 3 4 5; do
        for d in $(find /sys/fs/cgroup -maxdepth 6 -type d -name "$h" 2>/dev/null); do
            find "$d" -depth -mindepth 1 -type d -exec rmdir {} \; 2>/dev/null
            rmdir "$d" 2>/dev/null
        done
        [ -z "$(find /sys/fs/cgroup -maxdepth 6 -type d -name "$h" 2>/dev/null)" ] && return 0
        sleep 0.2
    done
}
# t_import_fake_image: catalogue image "testdesk" in $T/state with a placeholder disk and kernel,
# enough for vdid's stand-in VMM (tests/tools/vdid_fakevmm.c). Needs $VDICTL.
t_import_fake_image() {
    truncate -s 1M "$T/disk.raw"
    echo "not a kernel" >"$T/kernel"
    "$VDICTL" image import testdesk "$T/disk.raw" --kernel "$T/kernel" --state "$T/state" -q >/dev/null ||
        t_fail "vdictl image import failed"
}
# t_kill_matching SIGNAL PATTERN: signal, by PID, the processes whose command line matches PATTERN
# (a pattern naming $T: this test's own processes only).
t_kill_matching() {
    local p
    for p in $(pgrep -f "$2" || true); do kill "-$1" "$p" 2>/dev/null; done
}
# t_bg CMD...: start a background process that is stopped (by PID) at exit; its PID in $!.
t_bg() { "$@" & _t_pids+=($!); }

# t_check DESCRIPTION CMD...: run CMD, fail the suite with DESCRIPTION if it fails.
t_check() {
    local what=$1; shift
    _t_checks=$((_t_checks + 1))
    if "$@"; then echo "ok $_t_checks - $what"; else t_fail "$what"; fi
}
# t_expect_exit CODE DESCRIPTION CMD...: CMD must exit with CODE.
t_expect_exit() {
    local want=$1 what=$2; shift 2
    _t_checks=$((_t_checks + 1))
    "$@"; local rc=$?
    [ "$rc" = "$want" ] || t_fail "$what: exit status $rc, expected $want"
    echo "ok $_t_checks - $what"
}
# t_wait_for SECONDS CMD...: poll CMD every 0.1 s until it succeeds; fail after SECONDS (scaled).
t_wait_for() {
    local secs=$1; shift
    local deadline=$(( $(date +%s) + secs * VDI_TEST_TIMEOUT_MULT ))
    until "$@"; do
        [ "$(date +%s)" -ge "$deadline" ] && return 1
        sleep 0.1
    done
}
t_done() { echo "all $_t_checks checks passed"; exit 0; }
