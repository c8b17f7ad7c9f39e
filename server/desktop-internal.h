/* server/desktop-internal.h: what vdid's desktop files share (desktop.c, desktop-prep.c,
 * supervisor.c, login.c, vmm-ctl.c, vmm-proc.c). The rest of server/ sees desktops only through
 * server/internal.h (srv__vm_*, srv__login*, srv__session_*).
 *
 * Who owns what: supervisor.c starts and stops the whole set and runs the periodic tick;
 * desktop.c owns each srv_vm_t from vm_new to vm_gone (state, VMM process and control socket,
 * recycle); desktop-prep.c makes a desktop's disk in a worker and starts its VMM; login.c owns
 * logins waiting for a desktop and the sessions on desktops. vmm-ctl.c and vmm-proc.c are the two
 * channels to a VMM and know nothing about desktops.
 *
 * Thread: everything here runs on vdid's loop thread.
 */
#ifndef VDI_SERVER_DESKTOP_INTERNAL_H
#define VDI_SERVER_DESKTOP_INTERNAL_H

#include <sys/types.h>

#include "server/internal.h"
#include "server/net-internal.h"
#include "vmm/vmm.h"

/* ---- vmm-ctl.c: a client of one VMM's control socket ------------------------------------------ */
typedef struct srv_vmmctl srv_vmmctl_t;
struct srv_vmmctl_cb {
    void (*connected)(void *ctx);
    /* The connection failed (@status: a uv error). Last callback: the client is closed. */
    void (*failed)(void *ctx, int status);
    /* One line from the VMM, parsed (vmm/vmm.h). May call srv__vmmctl_close(). */
    void (*msg)(void *ctx, const struct vmm_msg *m);
    /* The socket closed or broke (the VMM is exiting). Last callback: the client is closed. */
    void (*lost)(void *ctx);
};
/* Connect to @path; @cb (borrowed, static) reports the outcome. Returns 0 (a callback follows)
 * or a uv error. */
int srv__vmmctl_connect(uv_loop_t *loop, const char *path, const struct srv_vmmctl_cb *cb,
                        void *ctx, srv_vmmctl_t **out);
/* Send request @cmd (@timeout_ms for VMM_CMD_SHUTDOWN) once connected; dropped otherwise. */
void srv__vmmctl_send(srv_vmmctl_t *c, enum vmm_cmd cmd, uint32_t timeout_ms);
/* Send a `message` for the guest agent to show @seconds; -ENOTCONN when not connected, -EINVAL
 * for a text vmm_request_format_message() refuses. The VMM's answer arrives as a reply (a
 * refusal is logged). */
int srv__vmmctl_message(srv_vmmctl_t *c, const char *text, unsigned seconds);
/* Close; no callback runs after this. NULL is fine. */
void srv__vmmctl_close(srv_vmmctl_t *c);

struct srv_jail;

/* ---- vmm-proc.c: a VMM process ------------------------------------------------------------------ */
typedef struct srv_vmmproc srv_vmmproc_t;
/* What to run: `vdi-vmm --kernel ... --control ... --display ...`, stdout and stderr appended to
 * @log_path (opened without following a symlink), in jail @jail (NULL: none). Borrowed. */
struct srv_vmm_spec {
    const char *vmm_path, *kernel, *initrd, *cmdline, *disk;
    const char *backing_root; /* the catalogue: the disk's backing chain must stay inside it */
    const char *control, *display, *log_path;
    uint64_t memory;
    unsigned vcpus, fb_width, fb_height;
    const struct srv_jail *jail;
    const char *mac;       /* NULL: no NIC; else its MAC, on the tap @tap_fd */
    int tap_fd;            /* the desktop's tap, passed as the VMM's fd 3 (borrowed) */
    const char *disk_data; /* NULL, or a second disk, read-write (the owner's data disk) */
    const char *disk_ro;   /* NULL, or a further disk, read-only (a patch bundle) */
    int stdout_fd;         /* > 0: the VMM's stdout (its serial console), e.g. a pipe to vdid;
                          * 0: stdout goes to @log_path too */
};
/* The process ended: exit @status, or killed by signal @sig (0: none). */
typedef void (*srv_vmmproc_exit_cb)(void *ctx, int64_t status, int sig);
/* Start the VMM in a session and process group of its own (so that it outlives vdid). Returns 0
 * with *pid set (@cb runs once, at its exit, unless srv__vmmproc_forget() came first), or a
 * negative code with a message in @why. */
int srv__vmmproc_spawn(uv_loop_t *loop, const struct srv_vmm_spec *spec, srv_vmmproc_exit_cb cb,
                       void *ctx, srv_vmmproc_t **out, pid_t *pid, char *why, size_t whylen);
/* Stop following the process (it keeps running; a restarted vdid re-attaches). No callback
 * after this. NULL is fine. */
void srv__vmmproc_forget(srv_vmmproc_t *p);
/* Is @pid a live process? A zombie is not (our parent may not reap the VMMs it inherited). */
bool srv__pid_alive(pid_t pid);
/* Signal @pid's process group (the VMM leads one), or @pid alone if it has none. */
void srv__kill_group(pid_t pid, int sig);

/* ---- cgroup.c: a cgroup per desktop (v1 or v2 behind one interface) ------------------------- */
typedef struct srv_cgroups srv_cgroups_t; /* the host's hierarchy, found at start */
typedef struct srv_cgroup srv_cgroup_t;   /* one desktop's cgroup(s) */
struct srv_cgroup_limits {
    uint64_t memory_max; /* bytes: guest memory + vmm_memory_overhead */
    uint32_t pids_max;
    uint32_t cpu_weight;  /* 1..10000, 100 = normal */
    uint32_t cpu_max_pct; /* of one CPU; 0: no cap */
};
/* Find the hierarchy (v2 with the memory and pids controllers, else v1's memory, pids and cpu)
 * and make this vdid's part of it, named after @instance (the state directory); vdid itself goes
 * into a leaf of its own with memory limit @self_max (0: none). Returns 0, or a negative code
 * with the reason in @why. Blocking (before the loop runs). */
int srv__cgroups_init(const char *instance, uint64_t self_max, srv_cgroups_t **out, char *why,
                      size_t n);
void srv__cgroups_fini(srv_cgroups_t *cgs); /* NULL is fine */
int srv__cgroups_version(const srv_cgroups_t *cgs);
/* Create cgroup @name ("desktop-ID", "patch-ID": one per VMM) with limits @l. 0, or a negative
 * code with the reason in @why. */
int srv__cgroup_create(const srv_cgroups_t *cgs, const char *name,
                       const struct srv_cgroup_limits *l, srv_cgroup_t **out, char *why, size_t n);
/* The existing cgroup @name (a desktop's, after a vdid restart). */
srv_cgroup_t *srv__cgroup_open(const srv_cgroups_t *cgs, const char *name);
/* The cgroup.procs files a process writes "0" to in order to join (malloc'd into @paths). */
size_t srv__cgroup_procs(const srv_cgroup_t *g, char **paths, size_t max);
/* Did the kernel kill a process of this cgroup at its memory limit? */
bool srv__cgroup_oom_killed(const srv_cgroup_t *g);
/* Remove the (empty) cgroup and free @g; srv__cgroup_close() only frees. NULL is fine. */
void srv__cgroup_destroy(srv_cgroup_t *g);
void srv__cgroup_close(srv_cgroup_t *g);

/* ---- jail.c: the VMM's jail --------------------------------------------------------------------- */
/* What vdid puts around one VMM (docs/security.md). Borrowed for the call. */
struct srv_jail {
    const char *program; /* vdi-jail (next to vdid) */
    uid_t uid;           /* the desktop's own uid and gid, from vmm_uid_first/count */
    gid_t gid;
    gid_t kvm_gid;         /* supplementary group for /dev/kvm (0: none) */
    const char *stage;     /* an empty directory (root-owned) where the new root is assembled */
    const char *const *ro; /* files and directories visible read-only at the same path */
    size_t n_ro;
    const char *const *rw; /* ... and read-write */
    size_t n_rw;
    char **cgroup_procs; /* cgroup.procs files to join */
    size_t n_cgroup_procs;
    const char *const *env; /* NAME=VALUE, the VMM's whole environment */
    size_t n_env;
    bool seccomp_log;
    unsigned keep_fds; /* file descriptors from 3 on that the VMM inherits (its tap) */
};
/* What a jailed VMM is given (a desktop's, or a maintenance VM's, server/patch.c). */
struct srv_jail_req {
    char name[64];        /* its stage directory RUN_DIR/jail/NAME: "ID" for a desktop, "patch-ID"
                          * for a maintenance VM */
    char cgroup[64];      /* its cgroup: "desktop-ID", "patch-ID" */
    uid_t uid;            /* from srv__jail_uid_alloc() */
    const char *image;    /* its image: STATE/images/IMAGE is visible read-only */
    const char *datadir;  /* visible, root's (0711): holds @disk and the VMM's log */
    const char *rundir;   /* given to @uid: its sockets */
    const char *disk;     /* given to @uid (0600): the disk it writes */
    const char *userdir;  /* NULL, or the owner's directory (visible, root's 0711) ... */
    const char *userdisk; /* ... and their data disk in it (given to @uid, 0600) */
    struct srv_cgroup_limits limits;
};
/* Strings srv__jail_build() makes for a struct srv_jail; free with srv__jail_bufs_free(). */
struct srv_jail_bufs {
    char *stage, *images, *cgroup_procs[4], *env[24];
    const char *ro[2], *rw[3];
    size_t n_procs, n_env;
};
/* Prepare jail @j for @r: the stage directory, the files given to the uid, the cgroup (*cgroup,
 * when vdid has a hierarchy), the environment. 0, or a negative code with the reason in @why.
 * Thread: loop. */
int srv__jail_build(srv_t *s, const struct srv_jail_req *r, struct srv_jail *j,
                    struct srv_jail_bufs *b, srv_cgroup_t **cgroup, char *why, size_t whylen);
void srv__jail_bufs_free(struct srv_jail_bufs *b);
/* The lowest uid of vmm_uid_first/count that no VMM of a desktop or a patch has; 0: none. */
uid_t srv__jail_uid_alloc(srv_t *s);
/* The arguments that run @vmm_argv in jail @j: "vdi-jail ... -- VMM ARGV", a malloc'd
 * NULL-terminated vector (free with srv__jail_argv_free). */
char **srv__jail_argv(const struct srv_jail *j, const char *const *vmm_argv);
void srv__jail_argv_free(char **argv);
/* vdi-jail's main (server/jail-main.c): set up the jail and exec the VMM. Returns only on
 * failure, with the exit status SRV_JAIL_EXIT_FAILED (the reason on stderr, which is the
 * desktop's vmm.log). */
#define SRV_JAIL_EXIT_FAILED 119
int srv__jail_main(int argc, char **argv);

/* ---- desktop.c: one desktop at run time -------------------------------------------------------- */
struct srv_vm {
    srv_t *s;
    int64_t id;
    char pool[64];
    char owner[BRK_USER_MAX];
    char image[64];
    uint32_t image_version; /* 0 until cloned */
    brk_desktop_state_t state;
    uint64_t memory;
    pid_t pid;
    uid_t uid;             /* the jailed VMM's uid and gid (0: not jailed) */
    srv_cgroup_t *cgroup;  /* NULL when not jailed */
    srv_vmmproc_t *proc;   /* NULL when we did not start it (re-attached) or it was reaped */
    srv_vmmctl_t *ctl;     /* NULL between connection attempts */
    struct srv_prep *prep; /* disk being made in a worker */
    bool ctl_up;           /* connected at least once */
    uint64_t next_connect; /* ms: next control connect attempt (0: none wanted) */
    uint64_t deadline;     /* ms: ready / shutdown deadline for the current state (0: none) */
    uint64_t disconnect_at;
    bool exit_poll;  /* control socket gone and no process handle: poll the pid */
    bool killed;     /* we sent SIGKILL */
    bool orphan;     /* its pool left the config: stopped, kept failed with its disk */
    char crash[240]; /* from a crashed/reboot event, or a ready timeout */
    char off[240];   /* from a shutdown event: how the VM stopped */
    char *rundir;    /* RUN_DIR/vm/ID */
    char *datadir;   /* STATE_DIR/desktops/ID */
    char *ctl_path;
    char *dpy_path;
    srv_session_t *session;
    char tap[BRK_NET_IFNAMSIZ]; /* its tap ("" when its pool has no network, or it is gone) */
    char mac[BRK_NET_MAC_LEN];  /* as in its record */
    char ip[BRK_NET_IP_LEN];
    bool user_disk; /* its owner's data disk is (to be) attached: see srv__user_disk_holder() */
    /* Rollouts (rollout.c). */
    uint32_t want_version; /* the version its disk is being cloned from (0: the current one) */
    uint32_t renew_from;   /* a kept disk on this version is replaced (restart on a new one) */
    uint64_t ready_at;     /* ms: when it became ready (or was re-attached ready); 0: not yet */
    bool healthy;          /* on its version for the pool's health_window without failing */
    uint64_t logoff_at;    /* ms: a busy desktop moves then (logoff = force); 0: not planned */
    bool moving;           /* recycled by a rollout to come back on another version */
    /* The guest agent (docs/agent-protocol.md), from the VMM's agent and agent-lost events. */
    bool agent_up;
    char agent[240]; /* the last event's reason ("testdesk v=1 heartbeat=5s caps=message"); "" */
    vdi_list_t link; /* in srv_t.vms */
};

/* A desktop object for record @d, in s->vms. */
srv_vm_t *srv__desktop_new(srv_t *s, const brk_desktop_t *d);
/* Unlink and free @vm, forgetting its process and control socket (both keep running). */
void srv__desktop_free(srv_vm_t *vm);
const brk_pool_config_t *srv__desktop_pool(const srv_vm_t *vm);
/* Move to @to in the store (checked against the state table) and log it. 0 or a store error. */
int srv__desktop_set_state(srv_vm_t *vm, brk_desktop_state_t to, const char *reason);
/* The VMM is gone (or never started): the desktop ends failed or gone; its files go (a dedicated
 * desktop that failed keeps its disk for the admin). Frees @vm. */
void srv__desktop_gone(srv_vm_t *vm, bool failed, const char *reason);
/* Begin recycling: the session is kicked, the guest asked to shut down (@hard: the VMM killed). */
void srv__desktop_recycle(srv_vm_t *vm, bool hard, const char *why);
/* Connect to @vm's control socket at @when (ms, vdi_now_ms() clock; supervisor.c's connect
 * timer calls srv__desktop_connect() then). */
void srv__desktop_connect_at(srv_vm_t *vm, uint64_t when);
/* Connect to the VMM's control socket now. */
void srv__desktop_connect(srv_vm_t *vm);
/* SIGKILL the VMM's process group; @as_failure: a ready timeout (a failure, not a recycle). */
void srv__desktop_kill(srv_vm_t *vm, bool as_failure);
/* A new desktop in @pool for @owner ("" for a spare), its disk made and its VMM started later.
 * On failure nothing is left but the record (failed, with the reason). */
int srv__desktop_provision(srv_t *s, const brk_pool_config_t *pool, const char *owner,
                           srv_vm_t **out);
/* Start a failed dedicated desktop again on the disk it kept. */
int srv__desktop_restart(srv_t *s, int64_t id, const brk_pool_config_t *pool, srv_vm_t **out);
/* The exit callback of a desktop's VMM process (@ctx: the srv_vm_t). */
void srv__desktop_on_exit(void *ctx, int64_t status, int sig);
/* Take / drop holder @holder's ("desktop-ID", "rollout-POOL") reference on @image version
 * @version, off the loop (the catalogue takes a file lock that an import may hold for a while).
 * Version 0: nothing. */
void srv__image_ref(srv_t *s, const char *image, uint32_t version, const char *holder);
void srv__image_unref(srv_t *s, const char *image, uint32_t version, const char *holder);

/* ---- desktop-prep.c: a desktop's disk and VMM start ---------------------------------------------- */
/* Make @vm's disk (clone, or its kept disk) and find its boot files on the catalogue worker,
 * then start its VMM on the loop; a failure there ends the desktop failed with the reason.
 * Returns 0, or a negative code with the reason in @why (-ESHUTDOWN: the worker no longer takes
 * jobs; or no network could be planned for it); nothing was started then. */
int srv__prep_start(srv_vm_t *vm, const brk_pool_config_t *pool, char *why, size_t whylen);
/* The live desktop (in s->vms) other than @except that has @owner's data disk, or NULL. */
const srv_vm_t *srv__user_disk_holder(srv_t *s, const char *owner, const srv_vm_t *except);
/* @vm goes away before its disk is ready: the worker's result is thrown away (a disk made for
 * it is removed, unless vdid is stopping: the next vdid decides). */
void srv__prep_abandon(struct srv_prep *p, bool stopping);

/* ---- net.c: a desktop's network ------------------------------------------------------------------ */
/* What the catalogue worker needs to give a desktop its network (a copy: nothing borrowed). */
struct srv_net_desk {
    bool on; /* the pool has a network */
    char table[24];
    char bridge[BRK_NET_IFNAMSIZ];
    struct srv_netport port;
    bool isolate;
    uint16_t vlan;
    uint64_t bandwidth_bps; /* 0: no cap */
    char hosts_file[300];   /* nat: its DHCP entry */
};
/* Pick @vm's MAC (kept when its record has one) and nat address, record them, and fill @d.
 * Returns 0 (d->on false: no network), or a negative code with the reason in @why. Loop. */
int srv__net_desktop_plan(srv_vm_t *vm, const brk_pool_config_t *pool, struct srv_net_desk *d,
                          char *why, size_t whylen);
/* Make the tap, put it on its bridge (isolated, VLAN), add its rules and DHCP entry; *tap_fd gets
 * the open tap (the caller owns it). Undoes itself on failure. Thread: the catalogue worker. */
int srv__net_desktop_up(const struct srv_net_desk *d, int *tap_fd, char *why, size_t whylen);
/* Desktop @id's tap name on this host. */
void srv__net_tap_name(srv_t *s, int64_t id, char out[BRK_NET_IFNAMSIZ]);
/* @vm's VMM is gone: remove its rules and DHCP entry (in a worker). Clears vm->tap. */
void srv__net_desktop_down(srv_vm_t *vm);
/* A maintenance VM's port (`image patch --network POOL`, patch number @seq) on pool @pool's
 * network: its own tap name, a fresh MAC and (nat) an address nothing else has, claimed until
 * srv__net_maint_down(); no bandwidth cap. Fills @d for srv__net_desktop_up(). 0, or a negative
 * code with the reason in @why (the pool has no network, no free address). Loop. */
int srv__net_maint_plan(srv_t *s, const brk_pool_config_t *pool, unsigned seq,
                        struct srv_net_desk *d, char *why, size_t whylen);
/* Its VMM is gone: remove the port's rules and DHCP entry, release its address. Loop. */
void srv__net_maint_down(srv_t *s, const brk_pool_config_t *pool, const struct srv_net_desk *d);

/* ---- login.c: what desktops tell logins and sessions ------------------------------------------- */
/* @vm became ready: logins waiting for it get it. */
void srv__logins_desktop_ready(srv_vm_t *vm);
/* @vm is gone: logins waiting for it hear why (@reason), its session is kicked. */
void srv__logins_desktop_gone(srv_vm_t *vm, bool failed, const char *reason);
/* Kick @vm's session (if any, and not kicked yet) with @reason. */
void srv__session_kick_vm(srv_vm_t *vm, const char *reason);
/* Detach @vm's session: the session lives on without a desktop (@kick: ask its owner to close). */
void srv__session_detach(srv_vm_t *vm, const char *reason, bool kick);
/* The tick: idle timeouts of sessions. */
void srv__sessions_tick(srv_t *s, uint64_t now);
/* Logins and their delivery timer. */
void srv__logins_init(srv_t *s);
/* Fail every waiting login ("the server is shutting down") and deliver the results now. */
void srv__logins_fini(srv_t *s);

/* ---- rollout.c: pools following their image's current version (docs/images.md) ------------------ */
/* Load each pool's latest rollout from the store (s->rollouts). Before the desktops re-attach. */
int srv__rollouts_init(srv_t *s);
void srv__rollouts_fini(srv_t *s);
/* The tick: read the images' current versions now and then, advance the rollouts, move desktops. */
void srv__rollouts_tick(srv_t *s, uint64_t now);
/* An image's current version may have changed (a patch published one): read it on the next tick. */
void srv__rollouts_kick(srv_t *s);
/* The version a new desktop of @pool gets now (0: the image's current one); it is being made.
 * _peek: only asking. */
uint32_t srv__rollout_version(srv_t *s, const brk_pool_config_t *pool);
uint32_t srv__rollout_version_peek(srv_t *s, const brk_pool_config_t *pool);
/* Does a running rollout want @vm on another version? */
bool srv__rollout_outdated(const srv_vm_t *vm);
/* @vm failed (crashed, not ready in time...) with @reason: a failed health check when it is on
 * the version a rollout moves its pool to; too many of them roll the pool back. */
void srv__rollout_desktop_failed(srv_vm_t *vm, const char *reason);

/* ---- supervisor.c --------------------------------------------------------------------------------- */
/* Recycle surplus spares and start missing ones (brk_spares_plan). */
void srv__spares_check(srv_t *s);

#endif /* VDI_SERVER_DESKTOP_INTERNAL_H */
