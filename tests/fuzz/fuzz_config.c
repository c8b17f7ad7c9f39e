// fuzz-srcs: broker/config.c broker/net.c auth/config.c common/*.c
// fuzz-libs:
/* tests/fuzz/fuzz_config.c: vdid's INI configuration parser on arbitrary bytes. A parse either
 * fails with VDI_ECONFIG and a message naming the file, or yields a config whose values are in
 * their documented ranges. */
#include <stdlib.h>
#include <string.h>

#include "broker/brk.h"
#include "common/vdi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    brk_config_t *cfg = NULL;
    int rc = brk_config_parse((const char *)data, size, "fuzz.conf", &cfg, err, sizeof(err));
    if (rc == 0) {
        VDI_ASSERT(cfg && cfg->state_dir[0] == '/' && cfg->admin_socket[0] == '/');
        VDI_ASSERT(cfg->overcommit_pct >= 10 && cfg->overcommit_pct <= 1000);
        /* What vdid hands to auth_create() is in auth's own ranges. */
        VDI_ASSERT(cfg->auth.pam_service == cfg->pam_service && cfg->pam_service[0]);
        VDI_ASSERT(cfg->auth.max_username_len >= 1 &&
                   cfg->auth.max_username_len <= AUTH_USERNAME_MAX);
        VDI_ASSERT(cfg->auth.max_password_len >= 1 &&
                   cfg->auth.max_password_len <= AUTH_PASSWORD_MAX);
        VDI_ASSERT(cfg->auth.pam_max_concurrent >= 1);
        for (size_t i = 0; i < cfg->n_pools; i++) {
            const brk_pool_config_t *p = &cfg->pools[i];
            VDI_ASSERT(p->image && p->vcpus >= 1 && p->vcpus <= 64);
            VDI_ASSERT(p->fb_width >= 320 && p->fb_height >= 200);
            VDI_ASSERT(brk_config_pool(cfg, p->name) == p);
        }
        brk_config_free(cfg);
    } else {
        VDI_ASSERT(!cfg && strncmp(err, "fuzz.conf:", 10) == 0);
    }
    return 0;
}
