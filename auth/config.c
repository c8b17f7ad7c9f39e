/* auth/config.c: the defaults of auth_config_t, the one place they are written down. vdid's
 * config parser (broker/config.c) starts its [auth] section from them, and docs/config.md lists
 * them (tests/unit/broker/test_config.c checks the two against each other). Kept apart from
 * auth.c so that a program that only parses the configuration links this file alone, without
 * TLS or PAM.
 */
#include <string.h>

#include "auth/auth.h"
#include "common/vdi.h"

void auth_config_defaults(auth_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->pam_service = "vdi";
    cfg->admin_group = VDI_ADMIN_GROUP_DEFAULT;
    cfg->handshake_timeout_ms = 10000;
    cfg->pam_max_concurrent = 2;
    cfg->pam_max_queued = 64;
    cfg->max_checks_per_addr = 4;
    cfg->max_username_len = AUTH_USERNAME_MAX;
    cfg->max_password_len = AUTH_PASSWORD_MAX;
    cfg->known_addr_days = 30;
    cfg->limit_user = (auth_limit_config_t){
        .free_failures = 3,
        .backoff_base_ms = 1000,
        .backoff_max_ms = 30000,
        .lockout_failures = 10,
        .lockout_ms = 15 * 60 * 1000,
        .forget_ms = 60 * 60 * 1000,
        .max_entries = 65536,
    };
    cfg->limit_user_global = cfg->limit_user;
    cfg->limit_user_global.free_failures = 30;
    cfg->limit_user_global.lockout_failures = 100;
    cfg->limit_addr = cfg->limit_user;
    cfg->limit_addr.free_failures = 5;
    cfg->limit_addr.lockout_failures = 30;
}
