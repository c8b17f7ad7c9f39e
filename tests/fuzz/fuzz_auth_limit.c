// fuzz-srcs: auth/limit.c auth/config.c common/*.c
// fuzz-libs: -luv
/* libFuzzer target for the login limiter (auth/limit.c): the input is a sequence of login
 * outcomes, each a user, an address key, a time step and what happened (check, failure,
 * success, a record restored), as an attacker drives them over the network, with small limits
 * so that backoffs, lockouts, expiry and the entry cap are reached. Invariants: nothing crashes
 * or leaks; the entries stay under the cap; a check never asks for a wait longer than the
 * longest lockout or backoff configured. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/internal.h"
#include "common/vdi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const users[] = {"alice", "bob", "ALICE", "", "eve\xff", "mallory"};
    auth_config_t cfg;
    auth_config_defaults(&cfg);
    cfg.limit_user.free_failures = 2;
    cfg.limit_user.lockout_failures = 4;
    cfg.limit_user.max_entries = 16;
    cfg.limit_addr.free_failures = 3;
    cfg.limit_addr.lockout_failures = 6;
    cfg.limit_addr.max_entries = 16;
    cfg.limit_user_global.max_entries = 16;
    uint64_t max_wait = VDI_MAX(VDI_MAX(cfg.limit_user.lockout_ms, cfg.limit_addr.lockout_ms),
                                cfg.limit_user_global.lockout_ms);
    max_wait =
        VDI_MAX(max_wait, VDI_MAX(cfg.limit_user.backoff_max_ms, cfg.limit_addr.backoff_max_ms));
    max_wait = VDI_MAX(max_wait, cfg.limit_user_global.backoff_max_ms);
    auth__limits_t *L = auth__limits_create(&cfg);
    uint64_t now = 1700000000000ull;
    for (size_t i = 0; i + 3 <= size; i += 3) {
        const char *user = users[data[i] % VDI_ARRAY_SIZE(users)];
        char addr[32];
        snprintf(addr, sizeof(addr), "192.0.2.%u", data[i + 1] % 24);
        now += (uint64_t)(data[i + 2] >> 3) * (data[i + 2] & 4 ? 60000 : 250);
        uint64_t wait = 0;
        const char *why = NULL;
        switch (data[i + 2] & 3) {
        case 0:
            auth__limits_check(L, user, addr, now, &wait, &why);
            if (wait > max_wait)
                abort();
            break;
        case 1:
            auth__limits_fail(L, user, addr, now);
            break;
        case 2:
            auth__limits_success(L, user, addr, now);
            break;
        case 3:
            (void)auth__limits_clean(L, user, addr, now);
            break;
        }
        if (auth__limits_count(L) > 3 * 16 + 16)
            abort();
    }
    auth__limits_destroy(L);
    return 0;
}
