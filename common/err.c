/* common/err.c: names for error codes (negative errno values and the project's VDI_E* codes). */
#include <stdlib.h>
#include <string.h>

#include "common/vdi.h"

static const char *const project_errors[] = {
    [-(VDI_EAUTH - VDI_EBASE)] = "authentication failed",
    [-(VDI_EBADIMAGE - VDI_EBASE)] = "disk image is corrupt or unsupported",
    [-(VDI_EBADKERNEL - VDI_EBASE)] = "kernel file is corrupt or of an unknown format",
    [-(VDI_ECONFIG - VDI_EBASE)] = "bad configuration",
    [-(VDI_EPROTOCOL - VDI_EBASE)] = "peer broke the protocol",
    [-(VDI_EGUEST - VDI_EBASE)] = "guest misprogrammed a device",
    [-(VDI_ELOCKOUT - VDI_EBASE)] = "too many failed attempts, locked out for now",
    [-(VDI_ECAPACITY - VDI_EBASE)] = "host has no capacity left for another desktop",
    [-(VDI_ETOKEN - VDI_EBASE)] = "token is unknown, expired or already used",
    [-(VDI_EDENIED - VDI_EBASE)] = "not entitled to this resource",
    [-(VDI_ECRASHED - VDI_EBASE)] = "virtual machine crashed",
    [-(VDI_ETLS - VDI_EBASE)] = "TLS failure",
    [-(VDI_ETIMEOUT - VDI_EBASE)] = "peer took too long",
    [-(VDI_ESTATE - VDI_EBASE)] = "operation not allowed in the current state",
    [-(VDI_EINUSE - VDI_EBASE)] = "still in use",
    [-(VDI_ECORRUPT - VDI_EBASE)] = "stored data failed a consistency check",
};

const char *vdi_strerror(int err)
{
    if (err == 0)
        return "success";
    if (err < VDI_EBASE && err > VDI_ELAST) {
        const char *s = project_errors[-(err - VDI_EBASE)];
        return s ? s : "unknown vdi error";
    }
    if (err < 0 && err > -4096) {
        /* strerrordesc_np: thread-safe and never formats into a shared buffer. */
        const char *s = strerrordesc_np(-err);
        return s ? s : "unknown error";
    }
    return "unknown error";
}

void vdi_assert_fail(const char *expr, const char *file, int line, const char *func)
{
    vdi_log_emit(VDI_LOG_LEVEL_ERR, "assert", "%s:%d: %s: assertion '%s' failed", file, line, func,
                 expr);
    abort();
}
