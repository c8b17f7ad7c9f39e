/* server/jail.c: the jail around each desktop's VMM, like Firecracker's jailer, on vdid's spawn
 * path: vdid starts `vdi-jail SPEC -- vdi-vmm ARGS` (server/jail-main.c: a small program of its
 * own, so that a desktop's start does not pay for loading vdid's libraries again), which sets the
 * jail up as root and then execs the VMM. In order:
 *
 *   1. join the desktop's cgroups (memory, pids, CPU limits: server/cgroup.c);
 *   2. new mount, IPC, UTS and network namespaces (the VMM reaches vdid only through its unix
 *      sockets, which work across network namespaces; a NIC comes as an opened tap);
 *   3. a new root on a tmpfs holding only what this VMM needs, each at the path it has on the
 *      host: /usr read-only (the dynamic loader and libraries), /dev/{null,zero,full,random,
 *      urandom,kvm}, a /proc that shows only its own processes, the VMM binary, the kernel and
 *      initrd and the golden image's directory read-only, the desktop's own state directory
 *      (its overlay disk) and run directory (its sockets) read-write; then pivot_root, and the
 *      old root is gone. Other desktops, vdi.db, the TLS key and the rest of the catalogue are
 *      not in it;
 *   4. no core dumps (guest memory is the user's);
 *   5. the desktop's own uid and gid (supplementary: /dev/kvm's group), no capabilities in any
 *      set, no_new_privs;
 *   6. only file descriptors 0-2 (and 3 on, as many as --keep-fds says: a desktop's opened
 *      tap), a cleared environment (what vdid passes);
 *   7. a seccomp filter that kills the process on system calls a VMM never makes (mount,
 *      namespaces, ptrace, module loading, bpf, kexec, keyrings, ...; vmm_seccomp = log only logs);
 *   8. exec.
 * A failure at any step ends the process with SRV_JAIL_EXIT_FAILED and one line on stderr (the
 * desktop's vmm.log) naming the step and the cause; nothing runs unjailed.
 */
#define VDI_LOG_TAG "jail"
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <seccomp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/vdi.h"
#include "server/desktop-internal.h"

#define MAX_PATHS 32

/* ---- vdid's side: the command line ------------------------------------------------------------ */
static void push(char ***v, size_t *n, const char *s)
{
    *v = vdi_xrealloc(*v, (*n + 2) * sizeof(**v));
    (*v)[(*n)++] = vdi_xstrdup(s);
    (*v)[*n] = NULL;
}

char **srv__jail_argv(const struct srv_jail *j, const char *const *vmm_argv)
{
    char **v = NULL, num[32];
    size_t n = 0;
    push(&v, &n, j->program);
    snprintf(num, sizeof(num), "%u", (unsigned)j->uid);
    push(&v, &n, "--uid");
    push(&v, &n, num);
    snprintf(num, sizeof(num), "%u", (unsigned)j->gid);
    push(&v, &n, "--gid");
    push(&v, &n, num);
    snprintf(num, sizeof(num), "%u", (unsigned)j->kvm_gid);
    push(&v, &n, "--kvm-gid");
    push(&v, &n, num);
    push(&v, &n, "--stage");
    push(&v, &n, j->stage);
    push(&v, &n, "--seccomp");
    push(&v, &n, j->seccomp_log ? "log" : "kill");
    if (j->keep_fds) {
        snprintf(num, sizeof(num), "%u", j->keep_fds);
        push(&v, &n, "--keep-fds");
        push(&v, &n, num);
    }
    for (size_t i = 0; i < j->n_ro; i++) {
        push(&v, &n, "--ro");
        push(&v, &n, j->ro[i]);
    }
    for (size_t i = 0; i < j->n_rw; i++) {
        push(&v, &n, "--rw");
        push(&v, &n, j->rw[i]);
    }
    for (size_t i = 0; i < j->n_cgroup_procs; i++) {
        push(&v, &n, "--cgroup");
        push(&v, &n, j->cgroup_procs[i]);
    }
    for (size_t i = 0; i < j->n_env; i++) {
        push(&v, &n, "--env");
        push(&v, &n, j->env[i]);
    }
    push(&v, &n, "--");
    for (size_t i = 0; vmm_argv[i]; i++)
        push(&v, &n, vmm_argv[i]);
    return v;
}

void srv__jail_argv_free(char **argv)
{
    if (!argv)
        return;
    for (size_t i = 0; argv[i]; i++)
        free(argv[i]);
    free(argv);
}

/* ---- the jail's side: set up, then exec ------------------------------------------------------ */
struct spec {
    uid_t uid;
    gid_t gid, kvm_gid;
    const char *stage;
    const char *ro[MAX_PATHS], *rw[MAX_PATHS], *cgroup[8], *env[MAX_PATHS + 1];
    size_t n_ro, n_rw, n_cgroup, n_env;
    bool seccomp_log;
    unsigned keep_fds; /* fds 3 .. 3 + keep_fds - 1 stay open (a desktop's tap) */
    char **argv;
};

static int die(const char *fmt, ...) VDI_PRINTF(1, 2);
static int die(const char *fmt, ...)
{
    va_list ap;
    fputs("vdi-jail: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return SRV_JAIL_EXIT_FAILED;
}

static int parse_id(const char *s, unsigned *out)
{
    uint64_t v;
    int rc = vdi_parse_u64(s, 0, UINT32_MAX - 1, &v);
    *out = (unsigned)v;
    return rc;
}

static int parse(int argc, char **argv, struct spec *sp)
{
    int i;
    for (i = 1; i < argc && strcmp(argv[i], "--"); i += 2) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned id;
        if (!v)
            return die("%s: a value is missing", k);
        if (!strcmp(k, "--uid") || !strcmp(k, "--gid") || !strcmp(k, "--kvm-gid")) {
            if (parse_id(v, &id) < 0)
                return die("%s %s: not a number", k, v);
            if (k[2] == 'u')
                sp->uid = id;
            else if (k[2] == 'g')
                sp->gid = id;
            else
                sp->kvm_gid = id;
        } else if (!strcmp(k, "--keep-fds")) {
            if (parse_id(v, &id) < 0 || id > 8)
                return die("%s %s: not a number from 0 to 8", k, v);
            sp->keep_fds = id;
        } else if (!strcmp(k, "--stage")) {
            sp->stage = v;
        } else if (!strcmp(k, "--seccomp")) {
            sp->seccomp_log = !strcmp(v, "log");
        } else if (!strcmp(k, "--ro") && sp->n_ro < MAX_PATHS) {
            sp->ro[sp->n_ro++] = v;
        } else if (!strcmp(k, "--rw") && sp->n_rw < MAX_PATHS) {
            sp->rw[sp->n_rw++] = v;
        } else if (!strcmp(k, "--cgroup") && sp->n_cgroup < VDI_ARRAY_SIZE(sp->cgroup)) {
            sp->cgroup[sp->n_cgroup++] = v;
        } else if (!strcmp(k, "--env") && sp->n_env < MAX_PATHS) {
            sp->env[sp->n_env++] = v;
        } else {
            return die("%s: unknown option or too many", k);
        }
    }
    if (i >= argc - 1)
        return die("no program after --");
    if (!sp->uid || !sp->gid || !sp->stage)
        return die("--uid, --gid (not 0) and --stage are required");
    sp->argv = argv + i + 1;
    return 0;
}

/* mkdir -p of @path's parents under the stage (all root-owned, 0755, on the tmpfs). */
static int make_parents(const char *path)
{
    char *p = vdi_xstrdup(path);
    int rc = 0;
    for (char *s = strchr(p + 1, '/'); s && rc == 0; s = strchr(s + 1, '/')) {
        *s = 0;
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            rc = -errno;
        *s = '/';
    }
    free(p);
    return rc;
}

/* Make @src visible at @stage@src: bind mount, then read-only (@ro) with nosuid and nodev, and
 * noexec unless @exec. */
static int show(const char *stage, const char *src, bool ro, bool exec)
{
    struct stat st;
    char *dst = vdi_xasprintf("%s%s", stage, src);
    int rc = 0;
    if (stat(src, &st) < 0) {
        rc = die("%s: %s", src, strerror(errno));
        goto out;
    }
    if (make_parents(dst) < 0 ||
        (S_ISDIR(st.st_mode) ? mkdir(dst, 0755) < 0 && errno != EEXIST
                             : mknod(dst, S_IFREG | 0644, 0) < 0 && errno != EEXIST)) {
        rc = die("%s: cannot make the mount point: %s", dst, strerror(errno));
        goto out;
    }
    if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0) {
        rc = die("bind %s: %s", src, strerror(errno));
        goto out;
    }
    if (S_ISCHR(st.st_mode))
        goto out; /* device nodes keep their mount's flags (nodev would break them) */
    unsigned long fl =
        MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | (ro ? MS_RDONLY : 0) | (exec ? 0 : MS_NOEXEC);
    if (mount(NULL, dst, NULL, fl, NULL) < 0)
        rc = die("remount %s%s: %s", src, ro ? " read-only" : "", strerror(errno));
out:
    free(dst);
    return rc;
}

/* / as the host has it: /usr, and lib, lib64, bin, sbin either as symlinks into usr (merged /usr,
 * Debian 12) or as read-only directories. */
static int system_dirs(const char *stage)
{
    static const char *const top[] = {"/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin"};
    int rc = show(stage, "/usr", true, true);
    for (size_t i = 0; rc == 0 && i < VDI_ARRAY_SIZE(top); i++) {
        char target[256];
        ssize_t n = readlink(top[i], target, sizeof(target) - 1);
        if (n > 0) {
            target[n] = 0;
            char *dst = vdi_xasprintf("%s%s", stage, top[i]);
            if (symlink(target, dst) < 0)
                rc = die("symlink %s: %s", dst, strerror(errno));
            free(dst);
        } else if (access(top[i], F_OK) == 0) {
            rc = show(stage, top[i], true, true);
        }
    }
    if (rc == 0 && access("/etc/ld.so.cache", R_OK) == 0)
        rc = show(stage, "/etc/ld.so.cache", true, false);
    static const char *const devs[] = {"/dev/null",   "/dev/zero",    "/dev/full",
                                       "/dev/random", "/dev/urandom", "/dev/kvm"};
    for (size_t i = 0; rc == 0 && i < VDI_ARRAY_SIZE(devs); i++)
        if (access(devs[i], F_OK) == 0)
            rc = show(stage, devs[i], false, false);
    if (rc == 0) {
        char *proc = vdi_xasprintf("%s/proc", stage);
        unsigned long fl = MS_NOSUID | MS_NODEV | MS_NOEXEC;
        /* Only its own processes, and none of /proc/sys and the like (Linux 5.8+). */
        if (mkdir(proc, 0555) < 0 ||
            (mount("proc", proc, "proc", fl, "hidepid=invisible,subset=pid") < 0 &&
             mount("proc", proc, "proc", fl, "hidepid=2") < 0))
            rc = die("mount %s: %s", proc, strerror(errno));
        free(proc);
    }
    return rc;
}

static int new_root(const struct spec *sp)
{
    int rc;
    if (unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET) < 0)
        return die("unshare (mount, IPC, UTS, network namespaces): %s", strerror(errno));
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return die("make / private: %s", strerror(errno));
    if (mount("vdi-jail", sp->stage, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=4m") < 0)
        return die("tmpfs on %s: %s", sp->stage, strerror(errno));
    if ((rc = system_dirs(sp->stage)) != 0)
        return rc;
    for (size_t i = 0; i < sp->n_ro; i++)
        if ((rc = show(sp->stage, sp->ro[i], true, i == 0)) != 0) /* ro[0]: the VMM binary */
            return rc;
    for (size_t i = 0; i < sp->n_rw; i++)
        if ((rc = show(sp->stage, sp->rw[i], false, false)) != 0)
            return rc;
    if (chdir(sp->stage) < 0 || mkdir(".old", 0700) < 0 ||
        syscall(SYS_pivot_root, ".", ".old") < 0 || chdir("/") < 0)
        return die("pivot_root to %s: %s", sp->stage, strerror(errno));
    if (umount2("/.old", MNT_DETACH) < 0 || rmdir("/.old") < 0)
        return die("detach the old root: %s", strerror(errno));
    if (mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
        return die("remount the new root read-only: %s", strerror(errno));
    return 0;
}

static int drop_privileges(const struct spec *sp)
{
    gid_t groups[2] = {sp->gid, sp->kvm_gid};
    struct rlimit no_core = {0, 0};
    if (setrlimit(RLIMIT_CORE, &no_core) < 0)
        return die("no core dumps: %s", strerror(errno));
    if (setgroups(sp->kvm_gid ? 2 : 1, groups) < 0 || setresgid(sp->gid, sp->gid, sp->gid) < 0)
        return die("groups %u: %s", (unsigned)sp->gid, strerror(errno));
    /* The bounding set first (that needs CAP_SETPCAP, which the uid change takes away). */
    for (int cap = 0; prctl(PR_CAPBSET_READ, cap) >= 0; cap++)
        if (prctl(PR_CAPBSET_DROP, cap) < 0)
            return die("drop capability %d: %s", cap, strerror(errno));
    if (setresuid(sp->uid, sp->uid, sp->uid) < 0)
        return die("uid %u: %s", (unsigned)sp->uid, strerror(errno));
    /* A non-zero uid without keep-caps has empty permitted and effective sets; check. */
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) < 0 || d[0].permitted || d[1].permitted || d[0].effective ||
        d[1].effective)
        return die("capabilities are left after the uid change");
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return die("clear ambient capabilities: %s", strerror(errno));
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return die("no_new_privs: %s", strerror(errno));
    return 0;
}

/* System calls a VMM never makes. The VMM adds allow-lists of its own per thread on top. */
static int seccomp_filter(bool log_only)
{
    static const char *const deny[] = {
        "mount",
        "umount2",
        "pivot_root",
        "chroot",
        "unshare",
        "setns",
        "move_mount",
        "open_tree",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "mount_setattr",
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
        "ptrace", /* the sanitizers' leak checker stops the world with ptrace */
#endif
        "process_vm_readv",
        "process_vm_writev",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "bpf",
        "perf_event_open",
        "keyctl",
        "add_key",
        "request_key",
        "reboot",
        "swapon",
        "swapoff",
        "acct",
        "settimeofday",
        "clock_settime",
        "clock_adjtime",
        "adjtimex",
        "sethostname",
        "setdomainname",
        "iopl",
        "ioperm",
        "open_by_handle_at",
        "name_to_handle_at",
        "quotactl",
        "syslog",
        "vhangup",
        "lookup_dcookie",
        "userfaultfd",
        "personality",
    };
    uint32_t act = log_only ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS;
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    int rc = ctx ? 0 : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < VDI_ARRAY_SIZE(deny); i++) {
        int nr = seccomp_syscall_resolve_name(deny[i]);
        if (nr != __NR_SCMP_ERROR)
            rc = seccomp_rule_add(ctx, act, nr, 0);
    }
    /* New user namespaces through clone(); clone3's flags are out of a filter's reach, so it
     * reports ENOSYS and libc falls back to clone(). */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, act, SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER));
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    if (rc == 0)
        rc = seccomp_load(ctx);
    seccomp_release(ctx);
    return rc < 0 ? die("seccomp filter: %s", strerror(-rc)) : 0;
}

int srv__jail_main(int argc, char **argv)
{
    struct spec sp = {0};
    int rc = parse(argc, argv, &sp);
    if (rc)
        return rc;
    for (size_t i = 0; i < sp.n_cgroup; i++) {
        int fd = open(sp.cgroup[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "0", 1) != 1)
            return die("join cgroup %s: %s", sp.cgroup[i], strerror(errno));
        close(fd);
    }
    if ((rc = new_root(&sp)) != 0 || (rc = drop_privileges(&sp)) != 0)
        return rc;
    if (syscall(SYS_close_range, 3U + sp.keep_fds, ~0U, 0U) < 0)
        return die("close file descriptors: %s", strerror(errno));
    if ((rc = seccomp_filter(sp.seccomp_log)) != 0)
        return rc;
    sp.env[sp.n_env] = NULL;
    execve(sp.argv[0], sp.argv, (char **)sp.env);
    return die("exec %s: %s", sp.argv[0], strerror(errno));
}
