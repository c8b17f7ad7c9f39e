/* server/net-tc.c: a pool's bandwidth cap on each desktop's tap, with the kernel's traffic control
 * through tc(8) (iproute2): a token bucket filter (tbf) on the tap's egress caps what reaches the
 * desktop; what the desktop sends enters on the tap's ingress, where a u32 filter redirects it
 * (mirred) to an ifb device of the desktop's own with a token bucket of its own, and then goes on
 * to the bridge as from the tap. The tap's qdiscs go with the tap; the ifb is removed with the
 * desktop (net.c). Runs on the catalogue worker with the rest of a desktop's network set-up.
 */
#define VDI_LOG_TAG "net"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server/net-internal.h"

extern char **environ;

/* Run tc with @argv (NULL-terminated, argv[0] "tc"); its stderr into @why on failure. */
static int run_tc(const char *const argv[], char *why, size_t whylen)
{
    char errpath[] = "/tmp/vdi-tc-XXXXXX";
    int efd = mkstemp(errpath);
    if (efd < 0)
        return -errno;
    unlink(errpath);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, efd, 1);
    posix_spawn_file_actions_adddup2(&fa, efd, 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, "tc", &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        close(efd);
        snprintf(why, whylen, "cannot run tc: %s (install iproute2)", strerror(rc));
        return -rc;
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        close(efd);
        return 0;
    }
    char out[160] = "";
    ssize_t n = pread(efd, out, sizeof(out) - 1, 0);
    close(efd);
    out[n > 0 ? n : 0] = 0;
    out[strcspn(out, "\n")] = 0;
    size_t k = 0;
    for (int i = 0; argv[i] && k < whylen; i++)
        k += (size_t)snprintf(why + k, whylen - k, "%s%s", i ? " " : "", argv[i]);
    if (k < whylen)
        snprintf(why + k, whylen - k, ": %s", out[0] ? out : "failed");
    return -EIO;
}

void srv__tc_ifb_name(const char *tap, char out[BRK_NET_IFNAMSIZ])
{
    snprintf(out, BRK_NET_IFNAMSIZ, "vdq%s", tap + 3);
}

int srv__tc_cap(const char *tap, const char *ifb, uint64_t bps, char *why, size_t whylen)
{
    char rate[32], burst[32];
    /* A bucket of 20 ms at the rate, and never less than a few full frames. */
    uint64_t b = bps / 8 / 50;
    if (b < 16384)
        b = 16384;
    snprintf(rate, sizeof(rate), "%" PRIu64 "bit", bps);
    snprintf(burst, sizeof(burst), "%" PRIu64 "b", b);
    const char *down[] = {"tc",   "qdisc", "replace", "dev", tap,       "root", "tbf",
                          "rate", rate,    "burst",   burst, "latency", "50ms", NULL};
    int rc = run_tc(down, why, whylen);
    if (rc < 0)
        return rc;
    rc = srv__link_add(ifb, "ifb");
    if (rc == 0)
        rc = srv__link_up(ifb);
    if (rc < 0) {
        snprintf(why, whylen, "cannot make ifb device %s: %s", ifb, vdi_strerror(rc));
        return rc;
    }
    const char *up[] = {"tc",   "qdisc", "replace", "dev", ifb,       "root", "tbf",
                        "rate", rate,    "burst",   burst, "latency", "50ms", NULL};
    const char *ingress[] = {"tc", "qdisc", "add", "dev", tap, "handle", "ffff:", "ingress", NULL};
    const char *redirect[] = {"tc",       "filter", "add",    "dev",      tap,   "parent", "ffff:",
                              "protocol", "all",    "u32",    "match",    "u32", "0",      "0",
                              "action",   "mirred", "egress", "redirect", "dev", ifb,      NULL};
    if ((rc = run_tc(up, why, whylen)) < 0 || (rc = run_tc(ingress, why, whylen)) < 0 ||
        (rc = run_tc(redirect, why, whylen)) < 0) {
        srv__link_del(ifb);
        return rc;
    }
    return 0;
}
