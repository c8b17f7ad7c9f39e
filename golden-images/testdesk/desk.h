/* golden-images/testdesk/desk.h: the desktop loop, the commands, and the device drivers it
 * calls. Ring 3, boot CPU. */
#ifndef TD_DESK_H
#define TD_DESK_H

#include "golden-images/testdesk/td.h"

struct td_options {
    const char *run;     /* testdesk.run: commands separated by ';' */
    const char *require; /* testdesk.require: devices that must be present */
    unsigned data_disk;  /* testdesk.data: the user's data disk (its index; 0: none) */
    unsigned anim;       /* testdesk.anim: percent of the screen changed per frame */
    unsigned fps;        /* testdesk.fps: animation frame rate (default 30) */
    unsigned hb;         /* testdesk.hb: the agent's heartbeat period in seconds (default 5) */
};
extern struct td_options td_opt;

void td_ioapic_route(unsigned irq, unsigned vector);

/* ---- pci.c: configuration mechanism #1, bus 0 and the buses behind bridges ---------------- */
struct td_pci_dev {
    uint8_t bus, dev, fn;
    uint16_t vendor, device, subsys;
    uint32_t class_rev; /* class << 8 | revision */
    uint64_t bar[6], bar_size[6];
    bool bar_io[6];
};
#define TD_PCI_MAX 64
extern struct td_pci_dev td_pci_devs[TD_PCI_MAX];
extern unsigned td_pci_ndevs;
void td_pci_scan(void);
uint32_t td_pci_rd32(const struct td_pci_dev *d, unsigned off);
uint16_t td_pci_rd16(const struct td_pci_dev *d, unsigned off);
uint8_t td_pci_rd8(const struct td_pci_dev *d, unsigned off);
void td_pci_wr32(const struct td_pci_dev *d, unsigned off, uint32_t v);
void td_pci_wr16(const struct td_pci_dev *d, unsigned off, uint16_t v);
/* Offset of the first capability @id at or after @from (0: from the start); 0 if none. */
unsigned td_pci_cap(const struct td_pci_dev *d, uint8_t id, unsigned from);

/* ---- virtio.c: virtio-pci 1.x transport (virtio 1.2 §4.1) and split virtqueues (§2.7) ------ */
struct td_vq {
    uint16_t index, size, last_used, next_desc;
    volatile struct td_vdesc *desc;
    volatile uint16_t *avail; /* flags, idx, ring[size] */
    volatile uint8_t *used;   /* flags, idx, ring[size] of {id, len} */
    uint64_t notify;          /* the doorbell address */
};
struct td_virtio {
    const struct td_pci_dev *pci;
    const char *name;
    uint64_t common, notify, isr, devcfg, msix_table;
    uint32_t notify_mult;
    uint64_t features; /* negotiated */
    struct td_vq vq[10];
    unsigned nvq;
    unsigned msix_entries; /* used by the queues; queues past the last share it */
};
struct td_vdesc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};
#define TD_VIRTIO_F_VERSION_1 (1ULL << 32)
/* The virtio device type of a PCI function (virtio 1.2 §4.1.2), or 0 if it is not one. */
unsigned td_virtio_type(const struct td_pci_dev *d);
/* Reset, negotiate (@want & offered; VERSION_1 is required), set up @nvq queues of at most
 * @qsize entries with one MSI-X vector each. Prints TESTDESK FAIL and returns -1 on failure
 * (the device is then left FAILED). */
int td_virtio_init(struct td_virtio *v, const struct td_pci_dev *d, const char *name, uint64_t want,
                   unsigned nvq, uint16_t qsize);
void td_virtio_driver_ok(struct td_virtio *v);
/* The device-specific configuration of virtio function @d (mapped), before td_virtio_init(); 0
 * when it has none we can reach. */
uint64_t td_virtio_devcfg(const struct td_pci_dev *d);
/* Post a chain of @n buffers (@write[i]: the device writes it); false if the ring is full. */
bool td_vq_post(struct td_vq *q, const uint64_t *addr, const uint32_t *len, const bool *write,
                unsigned n);
void td_vq_kick(struct td_vq *q);
/* Give a completed single-descriptor chain back to the device as it was. */
void td_vq_repost(struct td_vq *q, uint16_t head);
/* Take one completed chain: its head descriptor and the length written. */
bool td_vq_take(struct td_vq *q, uint16_t *head, uint32_t *len);
/* Sleep (in ring 0) until @q has a completion or @timeout_us passes; false on timeout. */
bool td_vq_wait(struct td_vq *q, uint64_t timeout_us);
void td_desk_run(unsigned cpus) __attribute__((noreturn));

/* ---- input.c: virtio-input keyboard and tablet --------------------------------------------- */
/* Probe a virtio-input function; it becomes the keyboard or the tablet (by its event bits). */
void td_input_probe(const struct td_pci_dev *d);
bool td_have_keyboard(void), td_have_tablet(void);
/* Drain the event queues: echo each event on serial, feed the desktop. True if any came. */
bool td_input_poll(void);

/* ---- blk.c: virtio-blk and virtio-rng ------------------------------------------------------ */
void td_blk_probe(const struct td_pci_dev *d);
void td_rng_probe(const struct td_pci_dev *d);
unsigned td_blk_count(void);
bool td_have_rng(void);
uint64_t td_blk_sectors(unsigned disk); /* 0 when there is no such disk */
bool td_blk_ro(unsigned disk);
/* Read or write @count sectors at @sector of disk @disk (its index in PCI order). 0 or -1. */
int td_blk_io(unsigned disk, bool write, uint64_t sector, void *data, uint32_t count);
int td_blk_flush(unsigned disk); /* 0 (also when the device has no flush) or -1 */
/* Commands (desk.c parses them); each prints its TESTDESK OK/FAIL line. */
void td_blk_cmd(const char *op, int argc, char **argv);
void td_rng_cmd(int argc, char **argv);

/* ---- fb.c: the bochs-display device and the desktop drawing -------------------------------- */
void td_fb_probe(const struct td_pci_dev *d);
bool td_fb_present(void);
uint32_t td_fb_width(void), td_fb_height(void);
void td_fb_draw_desktop(void);
void td_fb_key(unsigned code, bool shift);      /* add to the key text line */
void td_fb_pointer(uint32_t x, uint32_t y);     /* move the marker */
void td_fb_clock(uint32_t secs_since_midnight); /* redraw the clock */
void td_fb_anim_frame(unsigned percent, uint64_t frame);
void td_fb_banner(const char *text); /* drawn in the title bar (agent.c's `banner` file) */

/* ---- agent.c: the data area and the patch agent (patch.c) ---------------------------------- */
/* Read disk 0's data area: print its files, the banner, a crash and a hang request (`testdesk:
 * file ...`, `TESTDESK BANNER ...`, `TESTDESK CRASH in MS ms`, `TESTDESK AGENT hang in MS ms`)
 * and show the banner on screen. */
void td_agent_boot(void);
/* If a read-only disk holds a patch bundle, run it (PATCH EXIT N) and power off; else return. */
void td_agent_patch(void);
/* The data area's `crash` file, as td_agent_boot() read it: true with the milliseconds after
 * READY at which testdesk is to crash (td_crash), false when there is no valid one. */
bool td_agent_crash_ms(uint64_t *ms);
/* The same for the `hang` file: when the guest agent is to stop (td_console_hang). */
bool td_agent_hang_ms(uint64_t *ms);

/* ---- console.c: the guest agent on a virtio-console port (docs/agent-protocol.md) ---------- */
void td_console_probe(const struct td_pci_dev *d);
bool td_have_agent(void);
/* Serve the agent's port: control messages, lines from the host, heartbeats, the message on
 * screen. Returns the td_now_us() time it wants to run again by. */
uint64_t td_console_poll(void);
void td_console_cmd(const char *op); /* agent-hang, agent-resume */
void td_console_hang(void);          /* the agent stops: no heartbeat, no answer */
void td_fb_message(
    const char *text); /* fb.c: the message band under the network line ("" clears) */

/* ---- net.c: virtio-net under the IPv4 stack (netstack.c) ---------------------------------- */
void td_net_probe(const struct td_pci_dev *d);
bool td_have_net(void);
/* Receive, answer, run the stack's timers; returns when it next wants to run (td_now_us). */
uint64_t td_net_poll(void);
void td_net_cmd(const char *op, int argc, char **argv); /* net-ping, net-udp */
/* The patch agent's `fetch` (a struct tp_env callback, patch.h): waits for the lease. */
int td_net_fetch(void *ctx, const char *host, unsigned port, const char *name, void *buf,
                 size_t cap, size_t *len, char *why, size_t whylen);
void td_fb_net(const char *line); /* fb.c: the address line on screen */

#endif
