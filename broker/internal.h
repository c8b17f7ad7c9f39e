/* broker/internal.h: what the broker's files share and its unit tests may reach. Only broker/
 * and tests/unit/broker/ include this file. */
#ifndef VDI_BROKER_INTERNAL_H
#define VDI_BROKER_INTERNAL_H

#include "broker/brk.h"

/* Open @path migrated to schema version @version only (1 <= version <= current): lets the tests
 * build an old database and watch brk_store_open() migrate it. */
int brk__store_open_at(const char *path, int version, brk_store_t **out);
/* The audit log's clock (Unix seconds; NULL: time()): what its rows' ts, the coalescing windows
 * and the retention limits read. For tests. */
void brk__store_set_clock(brk_store_t *st, int64_t (*clock)(void *ctx), void *ctx);

#endif /* VDI_BROKER_INTERNAL_H */
