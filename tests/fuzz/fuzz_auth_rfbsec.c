/* libFuzzer target for the RFB/VeNCrypt security handshake parser (auth/rfbsec.c). The first
 * input byte picks the options and the size of the pieces the rest is fed in; bytes after
 * START_TLS are treated as TLS plaintext, and credentials are accepted or refused by a bit. */
// fuzz-srcs: auth/rfbsec.c common/alloc.c common/err.c common/log.c common/util.c
// fuzz-libs:
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "auth/auth.h"
#include "common/vdi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t opt = data[0];
    data++, size--;
    auth_rfbsec_config_t cfg = {.allow_tlsplain = opt & 1,
                                .max_username_len = (opt & 2) ? 16 : 0,
                                .max_password_len = (opt & 2) ? 16 : 0};
    size_t chunk = (size_t)(opt >> 3) + 1;
    auth_rfbsec_t *s;
    if (auth_rfbsec_create(&cfg, &s) < 0)
        return 0;
    size_t off = 0;
    bool stop = false;
    while (!stop && off <= size) {
        size_t n = VDI_MIN(chunk, size - off), used = 0;
        enum auth_rfbsec_event ev = auth_rfbsec_feed(s, data + off, n, &used);
        VDI_ASSERT(used <= n);
        off += used;
        size_t olen;
        auth_rfbsec_output(s, &olen);
        auth_rfbsec_output_consume(s, olen);
        switch (ev) {
        case AUTH_RFBSEC_NEED_MORE:
            VDI_ASSERT(used == n);
            if (off == size)
                stop = true;
            break;
        case AUTH_RFBSEC_START_TLS:
            VDI_ASSERT(auth_rfbsec_subtype(s) == AUTH_VENCRYPT_X509PLAIN ||
                       (cfg.allow_tlsplain && auth_rfbsec_subtype(s) == AUTH_VENCRYPT_TLSPLAIN));
            break;
        case AUTH_RFBSEC_CREDENTIALS: {
            const char *u, *p;
            auth_rfbsec_credentials(s, &u, &p);
            VDI_ASSERT(strlen(u) > 0 && strlen(p) > 0);
            auth_rfbsec_finish(s, opt & 4, "no");
            break;
        }
        case AUTH_RFBSEC_FAILED:
            VDI_ASSERT(*auth_rfbsec_error(s));
            stop = true;
            break;
        case AUTH_RFBSEC_DONE:
            stop = true;
            break;
        }
    }
    auth_rfbsec_destroy(s);
    return 0;
}
