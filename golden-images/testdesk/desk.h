/* golden-images/testdesk/desk.h: the desktop loop, the commands, and the device drivers it
 * calls. Ring 3, boot CPU. */
#ifndef TD_DESK_H
#define TD_DESK_H

#include "golden-images/testdesk/td.h"

struct td_options {
    const char *run;     /* testdesk.run: commands separated by ';' */
    const char *require; /* testdesk.require: devices that must be present */
    unsigned anim;       /* testdesk.anim: percent of the screen changed per frame */
    unsigned fps;        /* testdesk.fps: animation frame rate (default 30) */
};
extern struct td_options td_opt;

void td_ioapic_route(unsigned irq, unsigned vector);
void td_desk_run(unsigned cpus) __attribute__((noreturn));

#endif
