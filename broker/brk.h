/* broker/brk.h: the connection broker inside vdid: its configuration (INI), the state store
 * (SQLite: pools, desktops, sessions, tokens, audit log) and the desktop state machine.
 *
 * Thread rules: every function here runs on vdid's loop thread (or, in vdictl and tests, on
 * the only thread) unless its comment says otherwise. Nothing here is thread-safe.
 */
#ifndef VDI_BROKER_BRK_H
#define VDI_BROKER_BRK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/auth.h"

/* ---- Configuration ------------------------------------------------------------------------ */
/* The configuration is a plain value: callers read its fields. Every option, its default and its
 * range are documented in docs/config.md (kept in step with the table in broker/config.c). */

typedef enum {
    BRK_POOL_FLOATING = 0,  /* a desktop per login, destroyed on logout or disconnect timeout */
    BRK_POOL_DEDICATED = 1, /* a desktop per user that persists and is resumed */
} brk_pool_type_t;

/* A pool's network (docs/network.md): none; a vdi-managed bridge with NAT and DHCP from a
 * dnsmasq vdid supervises; or a tap on the admin's own bridge. */
typedef enum {
    BRK_NET_NONE = 0,
    BRK_NET_NAT = 1,
    BRK_NET_BRIDGE = 2,
} brk_net_mode_t;

typedef struct {
    char *name;           /* [pool NAME]: letters, digits, '-', '_' and '.' */
    char *image;          /* golden image name (required) */
    brk_pool_type_t type; /* floating | dedicated */
    uint32_t vcpus;       /* vCPUs per desktop */
    uint64_t memory;      /* guest memory in bytes */
    uint32_t fb_width;    /* framebuffer size */
    uint32_t fb_height;
    uint32_t min_spares;   /* ready desktops kept waiting for a login */
    uint32_t max_desktops; /* desktops of this pool at most, spares included */
    char **users;          /* entitled user names (n_users entries) */
    size_t n_users;
    char **groups; /* entitled group names (n_groups entries) */
    size_t n_groups;
    uint32_t disconnect_timeout_s; /* disconnected this long: floating desktops are recycled */
    uint32_t idle_timeout_s;       /* no input for this long: the session is closed (0 = off) */
    uint32_t cpu_weight;           /* the VMM's CPU weight against other desktops (1..10000) */
    uint32_t cpu_max_pct;          /* CPU cap in percent of one CPU (0: none) */
    brk_net_mode_t net;            /* network = none | nat | bridge:NAME */
    char *net_bridge;              /* bridge:NAME: the admin's bridge (NULL otherwise) */
    uint32_t vlan;                 /* bridge pools: 802.1Q tag of the desktops' ports (0: none) */
    bool isolate;                  /* desktops of the pool cannot reach each other */
    bool allow_host;               /* desktops may reach the host's own services */
    uint32_t subnet;               /* nat: network address, host byte order */
    uint32_t subnet_prefix;        /* nat: prefix length (16..28); 0 until brk_net_resolve() */
    uint64_t bandwidth_bps;        /* each desktop's cap, each direction, bits/s (0: none) */
    int user_disk;                 /* 1: each user has a persistent data disk (default for
                                    * dedicated pools), 0: none; -1 (auto) only while parsing */
    uint64_t user_disk_size;       /* its size when it is made */
    /* Rollouts of a new version of the pool's image (server/rollout.c). */
    uint32_t canary_percent;  /* share of the pool that moves first (at least one desktop) */
    uint32_t waves;           /* the rest moves in this many waves */
    uint32_t health_window_s; /* a desktop on the new version that stays up this long is healthy */
    uint32_t max_unhealthy;   /* more failed desktops on the new version: it is rolled back */
    bool logoff_force;        /* busy desktops: recycled after logoff_grace (else at logout) */
    uint32_t logoff_grace_s;
    unsigned line; /* line of the [pool NAME] header, for messages */
} brk_pool_config_t;

typedef struct {
    char *state_dir;    /* vdi.db, desktops/ID/, images/ (the golden image catalogue) */
    char *run_dir;      /* vm/ID/{control,display}.sock */
    char *admin_socket; /* the admin socket (JSON lines) */
    char *admin_group;  /* admin socket group and portal admin role (VDI_ADMIN_GROUP_DEFAULT) */
    char *listen;       /* RFB gateway address, "HOST:PORT" */
    char *vmm;          /* path of the vdi-vmm program */
    char *tls_cert;     /* PEM certificate and key for the gateway's TLS */
    char *tls_key;
    char *pam_service;           /* PAM service name (default: auth_config_defaults()'s) */
    uint64_t memory_budget;      /* bytes of host memory desktops may use (0: MemTotal - reserve) */
    uint64_t memory_reserve;     /* host memory kept for everything else when the budget is auto */
    uint32_t overcommit_pct;     /* admission: sum of desktop memory <= budget * pct / 100 */
    uint32_t ready_timeout_s;    /* a new desktop that is not ready after this long has failed */
    uint32_t shutdown_timeout_s; /* a recycled VMM that has not exited after this long is killed */
    int log_level;               /* VDI_LOG_LEVEL_* */
    /* Connections not logged in yet, per listener (server/listen.c's gate). */
    uint32_t preauth_max;          /* in all */
    uint32_t preauth_max_per_addr; /* from one address (IPv6: one /64) */
    /* The audit log (brk_store_audit_*). */
    uint32_t audit_keep_s;     /* rows older than this are deleted (0: kept) */
    uint32_t audit_max_rows;   /* the oldest rows beyond this many are deleted (0: no cap) */
    uint32_t audit_coalesce_s; /* repeated refusals within this window share a row (0: off) */
    /* The web portal (server/http.c, server/portal*.c). */
    char *web_listen;            /* HTTPS address "HOST:PORT"; NULL when "off" */
    char *metrics_listen;        /* plain-HTTP Prometheus endpoint "HOST:PORT"; NULL when "off" */
    char *web_root;              /* portal pages (NULL: found next to vdid) */
    char *novnc_dir;             /* the noVNC package (NULL: found next to vdid) */
    uint32_t web_session_idle_s; /* a web session unused this long ends */
    uint32_t web_session_max_s;  /* a web session ends this long after login, used or not */
    uint32_t web_token_ttl_s;    /* a console token (connect -> WebSocket) is valid this long */
    uint32_t web_max_sessions;   /* web sessions at most (console tokens: as many again) */
    uint32_t web_user_tokens;    /* sessions, and console tokens, one user holds at most */
    /* The VMM jail (server/jail.c, server/cgroup.c; docs/security.md). */
    bool jail;              /* each VMM in its own uid, mount namespace, cgroup, seccomp */
    uint32_t vmm_uid_first; /* VMM uids (and gids) come from [first, first + count) */
    uint32_t vmm_uid_count;
    uint64_t vmm_memory_overhead; /* cgroup memory limit = guest memory + this */
    uint32_t vmm_pids_max;        /* cgroup pids limit per desktop */
    bool vmm_seccomp_log;         /* forbidden system calls are logged, not fatal (debugging) */
    char **vmm_env;               /* environment variables passed through to the VMM */
    size_t n_vmm_env;
    uint64_t vdid_memory_max; /* vdid's own cgroup memory limit (0: none; jail = yes) */
    /* Desktop networks (server/net*.c; docs/network.md). */
    char *nat_uplink; /* nat pools masquerade only out of this interface (NULL: any but theirs) */
    char *dnsmasq;    /* the dnsmasq program nat pools' DHCP/DNS runs */
    /* What vdid hands to auth_create() as it is: [auth] (the login limits) over
     * auth_config_defaults(), the only place their defaults are written, plus pam_service,
     * tls_cert, tls_key, state_dir and admin_group (when set) from [vdid]; those strings are
     * borrowed from the fields above and live as long as the config. */
    auth_config_t auth;
    brk_pool_config_t *pools;
    size_t n_pools;
} brk_config_t;

/* Parse the INI text @text (@len bytes, need not be NUL-terminated), named @name in messages.
 * On success *out holds a new config the caller owns (release with brk_config_free()). On
 * failure returns VDI_ECONFIG (or -ENOMEM) and writes one line to @err (@errlen bytes) naming
 * the file, the line and the problem, e.g. "vdid.conf:12: unknown key 'vcpu' in [pool x]". */
int brk_config_parse(const char *text, size_t len, const char *name, brk_config_t **out, char *err,
                     size_t errlen);
/* Read and parse the file @path; as brk_config_parse(), and -errno when the file cannot be
 * read (named in @err). Blocking: call before the loop starts. */
int brk_config_load(const char *path, brk_config_t **out, char *err, size_t errlen);
void brk_config_free(brk_config_t *cfg);
/* The pool named @name, or NULL. Borrowed from @cfg. */
const brk_pool_config_t *brk_config_pool(const brk_config_t *cfg, const char *name);
/* Is @user (member of the @n_groups groups @groups) entitled to @pool? */
bool brk_pool_entitled(const brk_pool_config_t *pool, const char *user, const char *const *groups,
                       size_t n_groups);
const char *brk_pool_type_name(brk_pool_type_t t);

/* ---- Desktop networks: names, addresses, subnets (broker/net.c; pure functions) ----------- */
#define BRK_NET_IFNAMSIZ 16 /* IFNAMSIZ: interface names of at most 15 bytes */
#define BRK_NET_MAC_LEN  18 /* "02:76:64:xx:xx:xx" and its NUL */
#define BRK_NET_IP_LEN   16 /* dotted IPv4 and its NUL */
/* The firewall mark bit vdid's nftables rules put on every frame from a desktop's tap. */
#define BRK_NET_MARK 0x10000000u

const char *brk_net_mode_name(brk_net_mode_t m); /* "none", "nat", "bridge" */
/* A number that tells this vdid's host objects from another instance's (from its state dir). */
uint32_t brk_net_instance(const char *state_dir);
/* The bridge a nat pool's desktops share: "vdn" and 8 hex digits from @instance and @pool. */
void brk_net_bridge_name(uint32_t instance, const char *pool, char out[BRK_NET_IFNAMSIZ]);
/* Desktop @id's tap: "vdt", 4 hex digits of @instance, the id in base 36. */
void brk_net_tap_name(uint32_t instance, int64_t id, char out[BRK_NET_IFNAMSIZ]);
/* The tap of maintenance VM @seq (`image patch --network`): "vdm", the same 4 digits, @seq in
 * base 36. */
void brk_net_maint_tap_name(uint32_t instance, unsigned seq, char out[BRK_NET_IFNAMSIZ]);
/* A locally administered unicast MAC, "02:76:64:" and three bytes of @rnd. */
void brk_net_mac(const uint8_t rnd[3], char out[BRK_NET_MAC_LEN]);
/* Does @s read as a MAC address (six hex pairs with colons)? */
bool brk_net_mac_valid(const char *s);
void brk_net_ip_str(uint32_t ip, char out[BRK_NET_IP_LEN]); /* host byte order in */
int brk_net_ip_parse(const char *s, uint32_t *out);         /* 0 or -EINVAL */
/* A nat pool's gateway (the bridge's own address, DHCP and DNS): the subnet's first host. */
uint32_t brk_net_gateway(const brk_pool_config_t *pool);
/* Desktop addresses: from the gateway + 1 to the last host before the broadcast address. */
uint32_t brk_net_hosts(const brk_pool_config_t *pool);
/* An address for a new desktop of nat pool @pool: the first free one after @after (round robin,
 * so that a just-released address, whose DHCP lease may still run, is the last one reused),
 * none of the @n in @used. Returns 0 with *out set, or -ENOSPC when all are taken. */
int brk_net_ip_pick(const brk_pool_config_t *pool, const uint32_t *used, size_t n, uint32_t after,
                    uint32_t *out);
/* Give every nat pool without a subnet one (10.213.0.0/16 split in /24s, chosen from the pool's
 * name so that it stays put when pools are added or reordered) and check that nat subnets do not
 * overlap and each holds max_desktops addresses. Returns 0, or VDI_ECONFIG with the reason. */
int brk_net_resolve(brk_config_t *cfg, char *err, size_t errlen);

/* ---- Desktop state machine ---------------------------------------------------------------- */
typedef enum {
    BRK_DS_PROVISIONING = 0, /* overlay made, VMM starting, waiting for its `ready` event */
    BRK_DS_READY = 1,        /* running, nobody attached (a spare, or a dedicated desktop) */
    BRK_DS_IN_USE = 2,       /* a session is attached */
    BRK_DS_DISCONNECTED = 3, /* its session's client went away; kept until the timeout */
    BRK_DS_RECYCLING = 4,    /* VMM being stopped, overlay being deleted */
    BRK_DS_GONE = 5,         /* nothing left but the record */
    BRK_DS_FAILED = 6,       /* the VMM died or never became ready; reason in the audit log */
    BRK_DS__COUNT = 7,
} brk_desktop_state_t;

const char *brk_desktop_state_name(brk_desktop_state_t s);
/* Parse a state name; returns the state or -EINVAL. */
int brk_desktop_state_parse(const char *name);
/* May a desktop go from @from to @to? (The table is in broker/state.c.) */
bool brk_desktop_transition_ok(brk_desktop_state_t from, brk_desktop_state_t to);

/* ---- State store (SQLite) ----------------------------------------------------------------- */
/* One SQLite database in WAL mode with synchronous=NORMAL: commits append to the WAL without an
 * fsync, so the loop thread does not wait for the disk on every transition (checkpoints do sync;
 * SQLite runs them automatically and they are short at our write rates). The schema carries a
 * version (PRAGMA user_version) and brk_store_open() migrates older databases forward. */
typedef struct brk_store brk_store_t; /* opaque */

#define BRK_STORE_SCHEMA_VERSION 5

/* Bytes that hold any user name a login may carry, with its NUL: every struct field that stores
 * a user name (a desktop's owner, a session's user, ...) is this long, here and in server/, so
 * that the name compared at the next login is the whole name, never a cut one. */
#define BRK_USER_MAX (AUTH_USERNAME_MAX + 1)

/* Open (creating if needed) the database at @path (":memory:" for tests) and migrate it to
 * BRK_STORE_SCHEMA_VERSION. A database newer than this build is refused with VDI_ECORRUPT.
 * On success *out holds a store the caller owns (brk_store_close()). Returns 0, -errno,
 * VDI_ECORRUPT (not a vdi database, or damaged) or -EIO; the reason is logged. */
int brk_store_open(const char *path, brk_store_t **out);
void brk_store_close(brk_store_t *st);
/* The schema version the open database is at. */
int brk_store_schema_version(brk_store_t *st);

/* Pools: the config's pools are written on start (brk_store_sync_pools()); pools no longer in
 * the config are marked removed (kept for their desktops' records). */
int brk_store_sync_pools(brk_store_t *st, const brk_config_t *cfg);

typedef struct {
    int64_t id;
    char pool[64];
    char owner[BRK_USER_MAX]; /* "" when unassigned (a spare) */
    brk_desktop_state_t state;
    char image[64];
    int64_t image_version; /* 0 when unknown */
    char overlay[256];     /* path of the desktop's system disk overlay ("" when none) */
    int64_t vmm_pid;       /* 0 when no VMM runs */
    uint64_t memory;       /* bytes, for admission control */
    int64_t created;       /* Unix seconds */
    int64_t updated;
    char reason[128];          /* why it is in its state (failed: the cause) */
    char mac[BRK_NET_MAC_LEN]; /* its NIC's MAC ("" when its pool has no network) */
    char ip[BRK_NET_IP_LEN];   /* nat pools: the address DHCP gives it ("" otherwise) */
} brk_desktop_t;

/* Insert a new desktop in state provisioning; *id gets its id. The transition is audited. */
int brk_store_desktop_create(brk_store_t *st, const char *pool, const char *owner,
                             const char *image, uint64_t memory, int64_t *id);
/* Move desktop @id to @to, checking brk_desktop_transition_ok() against its stored state, and
 * record the transition (with @reason, may be NULL) in the audit log, atomically. Returns 0,
 * -ENOENT, or VDI_ESTATE when the transition is not allowed (nothing changes). */
int brk_store_desktop_set_state(brk_store_t *st, int64_t id, brk_desktop_state_t to,
                                const char *reason);
int brk_store_desktop_set_owner(brk_store_t *st, int64_t id, const char *owner);
int brk_store_desktop_set_vmm(brk_store_t *st, int64_t id, int64_t pid, const char *overlay,
                              int64_t image_version);
int brk_store_desktop_get(brk_store_t *st, int64_t id, brk_desktop_t *out);
/* Record desktop @id's MAC and address (either may be ""). */
int brk_store_desktop_set_net(brk_store_t *st, int64_t id, const char *mac, const char *ip);
/* Host network objects vdid made ("bridge", "tap"), with the pool (and desktop) they serve, so
 * that a vdid that starts after a crash or a config change can remove what no pool needs. */
int brk_store_netobj_add(brk_store_t *st, const char *kind, const char *name, const char *pool,
                         int64_t desktop);
int brk_store_netobj_del(brk_store_t *st, const char *kind, const char *name);
typedef int (*brk_netobj_fn)(const char *kind, const char *name, const char *pool, int64_t desktop,
                             void *ctx);
int brk_store_netobj_foreach(brk_store_t *st, brk_netobj_fn fn, void *ctx);

/* Rollouts (server/rollout.c): a pool moving from one version of its image to another. */
typedef enum {
    BRK_RO_CANARY,       /* the canary share is moving, or proving itself healthy */
    BRK_RO_WAVES,        /* the rest is moving, wave by wave */
    BRK_RO_DONE,         /* every desktop of the pool is on the new version */
    BRK_RO_ROLLING_BACK, /* too many failed: desktops go back to the old version */
    BRK_RO_ROLLED_BACK,  /* ... and are back */
    BRK_RO_SUPERSEDED,   /* another version was made current before it ended */
    BRK_RO__COUNT
} brk_rollout_state_t;
typedef struct {
    int64_t id;
    char pool[64];
    char image[64];
    uint32_t from, to; /* versions */
    brk_rollout_state_t state;
    uint32_t wave;    /* waves begun (0: the canary) */
    uint32_t healthy; /* desktops on @to that passed their health window */
    uint32_t failed;  /* desktops on @to that failed before that */
    int64_t started;  /* Unix seconds */
    int64_t updated;  /* Unix seconds (set by the store) */
    char reason[512]; /* why it stopped or ended ("" while it runs) */
} brk_rollout_t;
const char *brk_rollout_state_name(brk_rollout_state_t s);
bool brk_rollout_active(brk_rollout_state_t s); /* canary, waves or rolling back */
/* Record a new rollout (r->id set) or update the one with r->id. */
int brk_store_rollout_save(brk_store_t *st, brk_rollout_t *r);
/* Rollouts newest first (of @pool only, unless NULL); @fn returns non-zero to stop (returned). */
typedef int (*brk_rollout_fn)(const brk_rollout_t *r, void *ctx);
int brk_store_rollout_foreach(brk_store_t *st, const char *pool, brk_rollout_fn fn, void *ctx);
/* Call @fn for each desktop (gone ones only if @include_gone), by id. @fn returns 0 to go on,
 * anything else stops the walk and is returned. */
typedef int (*brk_desktop_fn)(const brk_desktop_t *d, void *ctx);
int brk_store_desktop_foreach(brk_store_t *st, bool include_gone, brk_desktop_fn fn, void *ctx);

typedef struct {
    int64_t id;
    char user[BRK_USER_MAX];
    int64_t desktop;
    char client[64]; /* peer address */
    int64_t started; /* Unix seconds */
    int64_t ended;   /* 0 while open */
    char end_reason[64];
} brk_session_t;

int brk_store_session_open(brk_store_t *st, const char *user, int64_t desktop, const char *client,
                           int64_t *id);
int brk_store_session_close(brk_store_t *st, int64_t id, const char *reason);
int brk_store_session_get(brk_store_t *st, int64_t id, brk_session_t *out);
typedef int (*brk_session_fn)(const brk_session_t *s, void *ctx);
/* Sessions by id; open ones only unless @include_closed. */
int brk_store_session_foreach(brk_store_t *st, bool include_closed, brk_session_fn fn, void *ctx);

/* Tokens (browser one-time tokens): only the SHA-256 @hash (hex) is stored. */
int brk_store_token_put(brk_store_t *st, const char *hash, const char *user, int64_t desktop,
                        int64_t expires);
/* Burn the token: on success *desktop and @user (@userlen bytes) are filled and the token can
 * never be used again. VDI_ETOKEN when unknown, used or expired at @now. */
int brk_store_token_take(brk_store_t *st, const char *hash, int64_t now, char *user, size_t userlen,
                         int64_t *desktop);

/* auth/'s login limits (auth_set_limit_sink, auth_limit_restore), one row per record. */
int brk_store_limit_put(brk_store_t *st, const char *scope, const char *key,
                        const auth_limit_record_t *rec);
int brk_store_limit_delete(brk_store_t *st, const char *scope, const char *key);
/* Delete the records whose end (rec->expires) is at or before @now_ms, then call @fn for each
 * remaining one (strings and @rec borrowed for the call; @fn must not write the store). @fn
 * returns 0 to go on; anything else stops the walk and is returned. */
typedef int (*brk_limit_fn)(const char *scope, const char *key, const auth_limit_record_t *rec,
                            void *ctx);
int brk_store_limit_foreach(brk_store_t *st, int64_t now_ms, brk_limit_fn fn, void *ctx);

/* A web portal session, as kept across restarts. Strings are borrowed (for the call, or from
 * the store for a callback). Times are Unix milliseconds. */
typedef struct {
    const char *digest; /* hex SHA-256 of the session cookie (never the cookie itself) */
    const char *user;
    const char *groups; /* the user's groups at login, each name followed by '\n' */
    bool is_admin;
    const char *csrf; /* the session's CSRF token */
    uint32_t idle_ms; /* ends this long after its last use... */
    int64_t last_used;
    int64_t expires; /* ...or at this time, whichever comes first */
} brk_web_session_t;

/* Insert or replace the session @ws->digest. */
int brk_store_web_session_put(brk_store_t *st, const brk_web_session_t *ws);
/* Record a use of session @digest at @last_used: 0 or -ENOENT. */
int brk_store_web_session_touch(brk_store_t *st, const char *digest, int64_t last_used);
int brk_store_web_session_delete(brk_store_t *st, const char *digest);
/* Delete the sessions over at @now_ms (absolute or idle), then call @fn for each remaining one,
 * as brk_store_limit_foreach(). */
typedef int (*brk_web_session_fn)(const brk_web_session_t *ws, void *ctx);
int brk_store_web_session_foreach(brk_store_t *st, int64_t now_ms, brk_web_session_fn fn,
                                  void *ctx);

typedef struct {
    int64_t id;
    int64_t ts; /* Unix seconds */
    char actor[64];
    char event[48];
    int64_t desktop; /* 0 when none */
    char user[BRK_USER_MAX];
    char detail[256];
} brk_audit_t;

/* Append an audit record. @actor, @user, @detail may be NULL; @desktop may be 0. */
int brk_store_audit(brk_store_t *st, const char *actor, const char *event, int64_t desktop,
                    const char *user, const char *detail);
typedef int (*brk_audit_fn)(const brk_audit_t *a, void *ctx);
/* The last @n records, oldest first. Text is as it was written (a user name need not be UTF-8),
 * cut to the fields' sizes before a UTF-8 sequence the cut would split. */
int brk_store_audit_tail(brk_store_t *st, unsigned n, brk_audit_fn fn, void *ctx);

/* The audit log's limits ([vdid] audit_keep, audit_max_rows, audit_coalesce). */
typedef struct {
    uint32_t keep_s;     /* rows older than this go (0: kept) */
    uint32_t max_rows;   /* the oldest rows beyond this many go (0: no cap) */
    uint32_t coalesce_s; /* the window of brk_store_audit_repeated() (0: every one is a row) */
} brk_audit_limits_t;
/* Set the limits (copied). Until called: no retention, a 60 s window. */
void brk_store_audit_set_limits(brk_store_t *st, const brk_audit_limits_t *lim);
/* An audit record of a refusal a client can repeat at will (a failed or locked-out login, a login
 * refused for want of a desktop), from address @peer (may be NULL). The first one with this
 * actor, event, user and peer writes a row as brk_store_audit() does; the same again within
 * coalesce_s only counts, and once the window is over (the next brk_store_audit_maintain() or
 * occurrence, or brk_store_close()) the row's detail gets " (repeated N times in S s)", N
 * counting the first. At most 256 kinds are coalesced at once; repeats beyond that share one
 * "audit.coalesced" row per window. Returns 0 or a store error. */
int brk_store_audit_repeated(brk_store_t *st, const char *actor, const char *event,
                             const char *user, const char *peer, const char *detail);
/* Periodic upkeep, cheap enough for the loop: finish the coalescing windows that are over, then
 * delete at most @batch rows, oldest first: those beyond max_rows, then those older than
 * keep_s. Returns how many rows went (@batch: more may be waiting, call again soon) or a store
 * error. */
int brk_store_audit_maintain(brk_store_t *st, unsigned batch);

/* ---- Placement: which desktop a login gets ------------------------------------------------- */
typedef enum {
    BRK_PICK_EXISTING = 1, /* the user's own desktop (reconnect, or a dedicated desktop) */
    BRK_PICK_SPARE = 2,    /* a ready, unassigned desktop of an entitled pool */
    BRK_PICK_NEW = 3,      /* make a new desktop in @pool */
    BRK_PICK_RESTART = 4,  /* the user's failed dedicated desktop: start it again on its disk */
} brk_pick_kind_t;

typedef struct {
    brk_pick_kind_t kind;
    int64_t desktop;               /* EXISTING, SPARE: the desktop */
    const brk_pool_config_t *pool; /* its pool (borrowed from the config) */
} brk_pick_t;

/* Decide where @user (member of @groups) goes: their live desktop in an entitled pool if any
 * (provisioning, ready, in-use or disconnected), else their failed desktop of an entitled
 * dedicated pool (restarted on the disk it kept; memory permitting), else a ready spare of the first entitled pool
 * in config order that has one, else a new desktop in the first entitled pool with room
 * (max_desktops) whose memory fits: @mem_used + pool memory <= @mem_budget. Reads the store,
 * changes nothing. Returns 0, VDI_EDENIED (entitled to no pool), VDI_ECAPACITY (every entitled
 * pool is full or the host has no memory left) or a store error. */
int brk_pick(brk_store_t *st, const brk_config_t *cfg, const char *user, const char *const *groups,
             size_t n_groups, uint64_t mem_budget, brk_pick_t *out);
/* Memory held by live desktops (every state but gone and failed), and how many each pool has
 * (@pool NULL: all). */
int brk_usage(brk_store_t *st, const char *pool, uint64_t *mem_used, unsigned *n_live);
/* The words a user sees when brk_pick() refuses them (@rc: VDI_EDENIED, VDI_ECAPACITY, anything
 * else: an internal error), written to @buf. Thread: any. */
void brk_pick_refusal(int rc, const char *user, char *buf, size_t n);

/* ---- Policies: pure functions, no store, no clock ---------------------------------------------
 * vdid's supervisor (server/) gathers the facts, asks these, and acts on the answers. */

/* Spares. @live: the pool's desktops that are not gone or failed (spares included); @spares:
 * its unassigned desktops that are provisioning or ready; @mem_used: memory held by every live
 * desktop of the host; @mem_budget: what desktops may use. Decides how many spares to start now
 * (while the pool is below min_spares, under max_desktops, and each new one fits the memory
 * budget: logins get the memory first) and how many ready spares are surplus and may be
 * recycled (more than min_spares, e.g. after min_spares was lowered). */
typedef struct {
    unsigned make; /* start this many new spares */
    unsigned drop; /* recycle this many surplus ready spares */
} brk_spares_t;
brk_spares_t brk_spares_plan(const brk_pool_config_t *pool, unsigned live, unsigned spares,
                             uint64_t mem_used, uint64_t mem_budget);

/* Admission: may a desktop of @memory bytes start when live desktops hold @mem_used of
 * @mem_budget? */
/* The directory name of @user's files (STATE/users/NAME/: the data disk): [A-Za-z0-9._-] as
 * they are, anything else (and a leading '.') as %XX, so that no name is "..", holds a '/' or
 * collides with another. 0, -EINVAL (empty) or -ENAMETOOLONG (@n too small). */
int brk_user_dir_name(const char *user, char *out, size_t n);
bool brk_admit(uint64_t memory, uint64_t mem_used, uint64_t mem_budget);

/* How a desktop's VMM process ended, as the supervisor saw it. */
typedef struct {
    bool signalled; /* killed by signal @sig, else exited with @status */
    int sig;
    int64_t status;      /* vdi-vmm's exit status (enum vmm_exit_status, vmm/vmm.h) */
    bool killed_by_vdid; /* vdid sent the SIGKILL (destroy, or recycle past its deadline) */
    bool recycling;      /* the desktop was being recycled: an end is expected, never a failure */
    const char *crash;   /* what a crashed/reboot event or a ready timeout said ("" or NULL) */
    const char *off;     /* what a shutdown event said ("" or NULL) */
} brk_vmm_exit_t;
/* Did the desktop fail, and why (one line for the desktop's reason and the audit log, into
 * @reason)? A guest power-off and anything during a recycle are ends, not failures. */
bool brk_vmm_exit_failed(const brk_vmm_exit_t *e, char *reason, size_t n);

#endif /* VDI_BROKER_BRK_H */
