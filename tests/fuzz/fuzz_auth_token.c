/* libFuzzer target for token lookups (auth/token.c): arbitrary strings presented as console and
 * session tokens against a store holding real ones, plus the occasional real token with one byte
 * changed. Nothing may crash, and nothing but the real tokens may be accepted. */
// fuzz-srcs: auth/token.c common/alloc.c common/err.c common/log.c common/util.c
// fuzz-libs: -lcrypto
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "common/vdi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    auth_tokens_t *t;
    auth_tokens_create(16, 4, NULL, NULL, &t);
    char console[AUTH_TOKEN_LEN + 1], session[AUTH_TOKEN_LEN + 1];
    VDI_ASSERT(auth_console_token_issue(t, "alice", "desk-1", NULL, 0, console) == 0);
    VDI_ASSERT(auth_session_create(t, "alice", 60000, 600000, session) == 0);
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    char *user = NULL;
    int r = auth_console_token_redeem(t, s, "desk-1", &user);
    VDI_ASSERT(r == VDI_ETOKEN || strcmp(s, console) == 0);
    free(user);
    const char *u;
    r = auth_session_check(t, s, &u);
    VDI_ASSERT(r == VDI_ETOKEN || strcmp(s, session) == 0);
    /* A real token with one byte replaced by input. */
    if (size >= 2) {
        char mod[AUTH_TOKEN_LEN + 1];
        memcpy(mod, session, sizeof(mod));
        mod[data[0] % AUTH_TOKEN_LEN] = (char)data[1];
        r = auth_session_check(t, mod, NULL);
        VDI_ASSERT(r == VDI_ETOKEN || strcmp(mod, session) == 0);
    }
    free(s);
    auth_tokens_destroy(t);
    return 0;
}
