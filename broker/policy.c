/* broker/policy.c: the supervisor's decisions as pure functions (broker/brk.h, "Policies"): how
 * many spares a pool needs, whether a desktop fits the memory budget, what a VMM's end means for
 * its desktop, and what a refused login is told. server/ gathers the facts and acts on the
 * answers; these take no store and no clock, so each case is a unit test. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "broker/brk.h"
#include "common/vdi.h"
#include "vmm/vmm.h"

void brk_pick_refusal(int rc, const char *user, char *buf, size_t n)
{
    if (rc == VDI_EDENIED)
        snprintf(buf, n, "user %s is not entitled to any desktop pool", user);
    else if (rc == VDI_ECAPACITY)
        snprintf(buf, n, "no desktop available: the server is at capacity; try again later");
    else
        snprintf(buf, n, "internal error; the administrator was told");
}

bool brk_admit(uint64_t memory, uint64_t mem_used, uint64_t mem_budget)
{
    return mem_used <= mem_budget && memory <= mem_budget - mem_used;
}

brk_spares_t brk_spares_plan(const brk_pool_config_t *pool, unsigned live, unsigned spares,
                             uint64_t mem_used, uint64_t mem_budget)
{
    brk_spares_t plan = {0, 0};
    if (spares > pool->min_spares) {
        plan.drop = spares - pool->min_spares;
        return plan;
    }
    while (spares + plan.make < pool->min_spares && live + plan.make < pool->max_desktops &&
           brk_admit(pool->memory, mem_used + (uint64_t)plan.make * pool->memory, mem_budget))
        plan.make++;
    return plan;
}

bool brk_vmm_exit_failed(const brk_vmm_exit_t *e, char *reason, size_t n)
{
    const char *crash = e->crash ? e->crash : "";
    const char *off = e->off ? e->off : "";
    bool failed;
    char what[160];

    if (e->signalled) {
        snprintf(what, sizeof(what), "vmm killed by signal %d (%s)%s", e->sig, strsignal(e->sig),
                 e->killed_by_vdid ? " by vdid" : "");
        failed = !e->killed_by_vdid;
    } else if (e->status == VMM_EXIT_POWEROFF) {
        snprintf(what, sizeof(what), "guest powered off");
        failed = false;
    } else if (e->status == VMM_EXIT_STOPPED) {
        /* Stopped from outside: our shutdown's deadline, quit, a signal. A failure unless we
         * were recycling it. */
        snprintf(what, sizeof(what), "vmm stopped the guest (%s)", off[0] ? off : "exit status 5");
        failed = true;
    } else {
        snprintf(what, sizeof(what), "vmm exited with status %lld (%s)", (long long)e->status,
                 vmm_exit_status_str((int)e->status));
        failed = true;
    }
    if (e->recycling)
        failed = false;
    /* The event said more than the exit status can (a triple fault, a ready timeout): lead with
     * it when the desktop failed. */
    if (failed && crash[0] && !strstr(what, crash))
        snprintf(reason, n, "%s (%s)", crash, what);
    else
        snprintf(reason, n, "%s", what);
    return failed;
}

int brk_user_dir_name(const char *user, char *out, size_t n)
{
    size_t k = 0;
    if (!user[0])
        return -EINVAL;
    for (const unsigned char *c = (const unsigned char *)user; *c; c++) {
        bool plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                     (*c >= '0' && *c <= '9') || *c == '_' || *c == '-' ||
                     (*c == '.' && c != (const unsigned char *)user);
        if (k + (plain ? 1 : 3) >= n)
            return -ENAMETOOLONG;
        if (plain)
            out[k++] = (char)*c;
        else
            k += (size_t)snprintf(out + k, n - k, "%%%02X", *c);
    }
    out[k] = 0;
    return 0;
}
