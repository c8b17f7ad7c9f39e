/* broker/state.c: the desktop state machine: names and the allowed transitions.
 *
 *   provisioning ──> ready ──> in-use <──> disconnected
 *        │             │         │              │
 *        └─────────────┴────┬────┴──────────────┘
 *                           v
 *                 recycling ──> gone        failed ──> recycling | gone
 *
 * Any live state may fail (the VMM died or never became ready). A dedicated desktop goes back
 * to ready when its user logs out; a floating one goes to recycling. A failed dedicated desktop
 * kept its disk and goes back to provisioning when its user logs in again.
 */
#include <string.h>

#include "broker/brk.h"
#include "common/vdi.h"

static const char *const names[BRK_DS__COUNT] = {
    [BRK_DS_PROVISIONING] = "provisioning",
    [BRK_DS_READY] = "ready",
    [BRK_DS_IN_USE] = "in-use",
    [BRK_DS_DISCONNECTED] = "disconnected",
    [BRK_DS_RECYCLING] = "recycling",
    [BRK_DS_GONE] = "gone",
    [BRK_DS_FAILED] = "failed",
};

#define B(s) (1u << (s))
static const unsigned allowed[BRK_DS__COUNT] = {
    [BRK_DS_PROVISIONING] =
        B(BRK_DS_READY) | B(BRK_DS_IN_USE) | B(BRK_DS_RECYCLING) | B(BRK_DS_FAILED),
    [BRK_DS_READY] = B(BRK_DS_IN_USE) | B(BRK_DS_RECYCLING) | B(BRK_DS_FAILED),
    [BRK_DS_IN_USE] =
        B(BRK_DS_DISCONNECTED) | B(BRK_DS_READY) | B(BRK_DS_RECYCLING) | B(BRK_DS_FAILED),
    [BRK_DS_DISCONNECTED] =
        B(BRK_DS_IN_USE) | B(BRK_DS_READY) | B(BRK_DS_RECYCLING) | B(BRK_DS_FAILED),
    [BRK_DS_RECYCLING] = B(BRK_DS_GONE) | B(BRK_DS_FAILED),
    [BRK_DS_GONE] = 0,
    [BRK_DS_FAILED] = B(BRK_DS_PROVISIONING) | B(BRK_DS_RECYCLING) | B(BRK_DS_GONE),
};

const char *brk_desktop_state_name(brk_desktop_state_t s)
{
    if ((unsigned)s >= BRK_DS__COUNT)
        return "unknown";
    return names[s];
}

int brk_desktop_state_parse(const char *name)
{
    for (int i = 0; i < BRK_DS__COUNT; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -EINVAL;
}

bool brk_desktop_transition_ok(brk_desktop_state_t from, brk_desktop_state_t to)
{
    if ((unsigned)from >= BRK_DS__COUNT || (unsigned)to >= BRK_DS__COUNT)
        return false;
    return (allowed[from] & B(to)) != 0;
}
