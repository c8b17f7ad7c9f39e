/* vmm/vmm.h: the public face of vdi-vmm (prefix vmm_): the contract between one vdi-vmm process
 * and whoever supervises it (vdid, tests, an admin with a socket tool). It is the one place that
 * defines the exit statuses, the control socket's requests, reply fields and events, and the code
 * that speaks that protocol on both ends: the server side (used by vdi-vmm, and by the stand-in
 * VMM of vdid's tests, so that both speak the same bytes) and the client side's parser (used by
 * vdid). docs/vmm-control.md documents the same contract for people.
 *
 * The protocol: a unix stream socket, one JSON object per line both ways. A request carries
 * "cmd" and an optional "id" that the reply echoes; each request gets exactly one reply, in
 * order, {"ok":true,...} or {"ok":false,"error":"..."}. Events ({"event":"...","reason":"..."})
 * go to every connected client, interleaved with replies.
 */
#ifndef VDI_VMM_VMM_H
#define VDI_VMM_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct vmm_vm vmm_vm_t; /* opaque; owned by vmm/main.c */

/* ---- Exit statuses -------------------------------------------------------------------------- */
enum vmm_exit_status {
    VMM_EXIT_POWEROFF = 0, /* the guest powered off (ACPI S5) */
    VMM_EXIT_FAILURE = 1,  /* the VMM itself failed (KVM refused something, out of memory) */
    VMM_EXIT_BADINPUT = 2, /* bad command line or input files: one line on stderr says which */
    VMM_EXIT_REBOOT = 3,   /* the guest reset itself (without --on-reboot=restart) */
    VMM_EXIT_CRASHED = 4,  /* triple fault, emulation failure, internal error (`crashed` event) */
    VMM_EXIT_STOPPED = 5,  /* stopped from outside: quit, a shutdown deadline, SIGTERM/SIGINT */
};
/* What an exit status means, in words ("the guest crashed"); "unknown exit status" otherwise.
 * Static string. Thread: any. */
const char *vmm_exit_status_str(int status);

/* ---- Events --------------------------------------------------------------------------------- */
enum vmm_event {
    VMM_EVENT_BOOTED,     /* the guest wrote its first line on the serial console */
    VMM_EVENT_READY,      /* the display showed the guest's first frame: the desktop can be used */
    VMM_EVENT_SHUTDOWN,   /* the VM stopped: guest power-off, quit, shutdown deadline, a signal */
    VMM_EVENT_REBOOT,     /* the guest reset itself */
    VMM_EVENT_CRASHED,    /* triple fault, emulation failure, internal error, failed entry */
    VMM_EVENT_AGENT,      /* the guest agent said hello, or its heartbeats came back */
    VMM_EVENT_AGENT_LOST, /* the guest agent closed its port or missed its heartbeats */
    VMM_EVENT_COUNT,
    VMM_EVENT_UNKNOWN = VMM_EVENT_COUNT, /* a name this build does not know (a newer VMM) */
};
/* The event's wire name ("ready"); NULL for VMM_EVENT_UNKNOWN. Thread: any. */
const char *vmm_event_name(enum vmm_event ev);

/* ---- Requests ------------------------------------------------------------------------------- */
enum vmm_cmd {
    VMM_CMD_STATUS,   /* reply: the struct vmm_status fields */
    VMM_CMD_PAUSE,    /* reply once no vCPU runs guest code */
    VMM_CMD_RESUME,   /* the vCPUs run again */
    VMM_CMD_SHUTDOWN, /* arg timeout_ms: power button, then stop the VM at the deadline */
    VMM_CMD_QUIT,     /* stop the VM now (exit status 5) */
    VMM_CMD_MESSAGE,  /* args text, seconds: the guest agent shows the text to the user */
    VMM_CMD_COUNT,
};
#define VMM_SHUTDOWN_TIMEOUT_DEFAULT_MS 10000u
#define VMM_SHUTDOWN_TIMEOUT_MAX_MS     3600000u
#define VMM_CONTROL_MAX_LINE            (64 * 1024) /* longer lines are refused (both ways) */
/* The command's wire name ("status"). Thread: any. */
const char *vmm_cmd_name(enum vmm_cmd cmd);
/* Format request @cmd (with @timeout_ms for VMM_CMD_SHUTDOWN, ignored otherwise) as one line
 * ending in '\n' into @buf. Returns its length, or -ENOSPC when @n is too small. Thread: any. */
int vmm_request_format(enum vmm_cmd cmd, uint32_t timeout_ms, char *buf, size_t n);
/* Format a `message` request: @text (UTF-8, at most VMM_AGENT_TEXT_MAX bytes) shown for
 * @seconds (1..VMM_AGENT_MESSAGE_MAX_S). Returns the line's length, -EINVAL for a text or a
 * duration out of range, or -ENOSPC when @n is too small. Thread: any. */
int vmm_request_format_message(const char *text, unsigned seconds, char *buf, size_t n);

/* ---- The status reply ----------------------------------------------------------------------- */
enum vmm_run_state {
    VMM_RUN_RUNNING, /* "running" */
    VMM_RUN_PAUSED,  /* "paused" */
    VMM_RUN_STOPPED, /* "stopped": between two VMs (--on-reboot=restart) or after the end */
};
/* The guest agent, as `status` reports it ("agent" object; docs/agent-protocol.md). */
struct vmm_agent_status {
    bool present;         /* the machine has the agent's port (virtio-console) */
    bool connected;       /* an agent in the guest has the port open */
    bool up;              /* it said hello and its heartbeats are on time */
    char name[32];        /* from its hello ("testdesk"); "" before */
    char caps[64];        /* from its hello ("message"), comma-separated */
    unsigned heartbeat_s; /* the period it announced; 0 before hello */
    uint64_t last_ms_ago; /* since its last line (0 before any) */
};
struct vmm_status {
    enum vmm_run_state state;
    bool ready;          /* the first frame was shown (the `ready` event went out) */
    uint64_t uptime_ms;  /* since the vCPUs started (0 when stopped) */
    unsigned vcpus;      /* 0 when stopped */
    uint64_t memory_mib; /* guest memory (0 when stopped) */
    int64_t rss_kib;     /* the VMM's resident memory, -1 if unknown */
    struct vmm_agent_status agent;
};

/* ---- Client side: what a supervisor reads --------------------------------------------------- */
enum vmm_msg_kind {
    VMM_MSG_EVENT,
    VMM_MSG_REPLY
};
struct vmm_msg {
    enum vmm_msg_kind kind;
    /* VMM_MSG_EVENT */
    enum vmm_event event;
    char reason[200]; /* "" when absent; cut to fit */
    /* VMM_MSG_REPLY */
    bool ok;
    char error[200]; /* when !ok */
    bool has_id;     /* the request carried an integer "id" */
    int64_t id;      /* echoed */
    bool has_status; /* a status reply: @status is filled */
    struct vmm_status status;
    bool guest_notified; /* a shutdown reply: the guest had enabled the power button */
};
/* Parse one line (without its '\n') from a VMM's control socket into @out. Returns 0, or
 * -EPROTO for a line that is neither an event nor a reply (not JSON, not an object, fields of the
 * wrong type). An event this build does not know parses as VMM_EVENT_UNKNOWN. Thread: any. */
int vmm_msg_parse(const char *line, size_t len, struct vmm_msg *out);

/* ---- Server side: the control socket -------------------------------------------------------- */
/* What the control server does to the machine it controls. Every entry is required; each runs on
 * the thread that calls vmm_control_serve()/vmm_control_handle(). */
struct vmm_control_ops {
    void (*status)(void *ctx, struct vmm_status *st); /* fill all but ready and rss_kib */
    void (*pause)(void *ctx);                         /* returns once no vCPU runs guest code */
    void (*resume)(void *ctx);
    bool (*paused)(void *ctx);
    /* Press the power button: 0, or -ENOTSUP when the guest has not enabled that event. */
    int (*power_button)(void *ctx);
    /* Stop the machine (exit status 5 follows); @why is for the log and the event. */
    void (*request_stop)(void *ctx, const char *why);
    /* Optional (NULL: the machine has no agent port). The guest agent: fill @st (left all zero:
     * no agent port), and show @text for
     * @seconds: 0, -ENOTCONN (no agent has the port open), -EOPNOTSUPP (the agent did not
     * announce "message"), -ENOBUFS (the guest is not reading what it was sent). */
    void (*agent_status)(void *ctx, struct vmm_agent_status *st);
    int (*agent_message)(void *ctx, const char *text, unsigned seconds);
};
typedef struct vmm_control vmm_control_t;
/* Listen at @path (mode 0600, a stale socket replaced; NULL: no socket, for tests) and set up
 * SIGTERM/SIGINT handling (a signal counts as quit; the caller blocks those signals). Returns 0
 * or -errno. Thread: main. */
int vmm_control_create(const char *path, vmm_control_t **out);
/* Flush pending events (up to 1 s), close every client, remove the socket. NULL is fine. */
void vmm_control_destroy(vmm_control_t *ctl);
/* Serve clients until @stop_fd becomes readable; @ops/@ctx is the running machine (NULL ops:
 * none, and requests that need one are refused). Returns 0 or -errno. Thread: main. */
int vmm_control_serve(vmm_control_t *ctl, int stop_fd, const struct vmm_control_ops *ops,
                      void *ctx);
/* Send what is queued to every client, waiting at most @timeout_ms. Thread: main. */
void vmm_control_flush(vmm_control_t *ctl, unsigned timeout_ms);
/* True once a client said quit or SIGTERM/SIGINT came, even if the machine was already stopping
 * for another reason (a guest reboot): the caller must not restart it then. Thread: main. */
bool vmm_control_quit_requested(const vmm_control_t *ctl);
/* Queue event @ev for every client (@reason may be NULL). VMM_EVENT_READY also makes `status`
 * say ready:true until vmm_control_new_machine(). Thread: any. */
void vmm_control_event(vmm_control_t *ctl, enum vmm_event ev, const char *reason);
/* A new machine starts (after a reboot with --on-reboot=restart): not ready until its own first
 * frame. Thread: main. */
void vmm_control_new_machine(vmm_control_t *ctl);
/* Handle one request line against @ops/@ctx (NULL ops: no machine); the reply (one JSON object,
 * no newline) is malloc'd in *reply, which the caller frees. Thread: main. */
void vmm_control_handle(vmm_control_t *ctl, const struct vmm_control_ops *ops, void *ctx,
                        const char *line, char **reply);

/* ---- The guest agent's wire format (agent-wire.c; docs/agent-protocol.md) ------------------- *
 * The other contract of vdi-vmm: with the small agent inside the guest, over a virtio-console
 * port named VMM_AGENT_PORT_NAME. Messages are lines: a verb, then `key=value` fields separated
 * by single spaces, ending in '\n'; text travels base64-encoded in fields named `...64`. This
 * part is freestanding (no libc, no errno) so that the test guest compiles the same file: the
 * helpers return -1 for malformed or oversized input. Thread: any. */
#define VMM_AGENT_PORT_NAME     "org.vdi.agent.0"
#define VMM_AGENT_VERSION       1
#define VMM_AGENT_MAX_LINE      (1u << 20) /* bytes of one line, its '\n' included */
#define VMM_AGENT_TEXT_MAX      4096       /* bytes of a message's text (before base64) */
#define VMM_AGENT_MESSAGE_MAX_S 3600       /* longest time a message stays on screen */
#define VMM_AGENT_HB_MIN_S      1          /* heartbeat periods an agent may announce */
#define VMM_AGENT_HB_MAX_S      300
#define VMM_AGENT_HB_MISSED     3 /* periods without a line before the agent counts as lost */
/* Base64 (RFC 4648 §4, padded): the encoded length of @n bytes; encode @n bytes of @src into
 * @dst (room for vmm_b64_len(@n) bytes, no NUL written) and return that length. */
size_t vmm_b64_len(size_t n);
size_t vmm_b64_encode(const void *src, size_t n, char *dst);
/* Decode @n characters of @src into @dst (room for @cap bytes). Returns the decoded length, or
 * -1 when @src is not padded base64 or does not fit. */
long vmm_b64_decode(const char *src, size_t n, uint8_t *dst, size_t cap);
/* Whether the line @line (@len bytes, no '\n') has the verb @verb. */
bool vmm_agent_is(const char *line, size_t len, const char *verb);
/* Find field @key in @line: true with *val and *vlen pointing into @line, false when absent. */
bool vmm_agent_field(const char *line, size_t len, const char *key, const char **val, size_t *vlen);
/* Field @key as a decimal number from @min to @max: 0, or -1 when absent or malformed. */
int vmm_agent_field_uint(const char *line, size_t len, const char *key, uint32_t min, uint32_t max,
                         uint32_t *out);

#endif /* VDI_VMM_VMM_H */
