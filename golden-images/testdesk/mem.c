/* golden-images/testdesk/mem.c: the PVH memory map, a bump allocator for device queues and
 * buffers, and mappings above 4 GiB (64-bit BARs) added to the identity map.
 *
 * Ring 3 may edit the page tables: they lie in the identity map like everything else. Entries only
 * ever go from not-present to present, which needs no TLB flush. */
#include "golden-images/testdesk/td.h"

struct pvh_memmap_entry {
    uint64_t addr, size;
    uint32_t type, reserved;
};

static uint64_t heap_next, heap_end, low_ram_end;
static uint64_t pd_pool[8][512] __attribute__((aligned(4096)));
static unsigned pd_used;

void td_mem_init(uint64_t start_info)
{
    const uint8_t *si = (const uint8_t *)start_info;
    uint32_t version = *(const uint32_t *)(si + 4);
    uint64_t lo = (uint64_t)(uintptr_t)td_image_end;
    uint64_t total = 0;
    if (version < 1 || !*(const uint64_t *)(si + 40)) {
        td_printf("TESTDESK FAIL memmap hvm_start_info version %u has no memory map\n", version);
        return;
    }
    const struct pvh_memmap_entry *e = (const void *)*(const uint64_t *)(si + 40);
    uint32_t n = *(const uint32_t *)(si + 48);
    for (uint32_t i = 0; i < n; i++) {
        td_printf("testdesk: mem 0x%016lx-0x%016lx type=%u\n", e[i].addr, e[i].addr + e[i].size - 1,
                  e[i].type);
        if (e[i].type != 1)
            continue;
        total += e[i].size;
        if (e[i].addr < (4ULL << 30) && e[i].addr + e[i].size > low_ram_end)
            low_ram_end = e[i].addr + e[i].size;
        /* The heap: the largest RAM range below 4 GiB above our image. */
        uint64_t a = e[i].addr > lo ? e[i].addr : lo;
        uint64_t b = e[i].addr + e[i].size;
        if (b > (4ULL << 30))
            b = 4ULL << 30;
        if (b > a && b - a > heap_end - heap_next) {
            heap_next = a;
            heap_end = b;
        }
    }
    td_printf("testdesk: ram %lu MiB, heap 0x%lx-0x%lx\n", total >> 20, heap_next, heap_end);
}

uint64_t td_mem_low_end(void)
{
    return low_ram_end;
}

void *td_alloc(uint64_t size, uint64_t align)
{
    uint64_t a = TD_ALIGN_UP(heap_next, align ? align : 16);
    if (a + size > heap_end || a + size < a)
        return NULL;
    heap_next = a + size;
    memset((void *)a, 0, size);
    return (void *)a;
}

bool td_map(uint64_t pa, uint64_t len)
{
    if (pa + len <= (4ULL << 30))
        return true; /* the static identity map */
    if (pa + len > (512ULL << 30) || pa + len < pa)
        return false; /* one PML4 entry is all we use */
    for (uint64_t a = pa & ~((1ULL << 21) - 1); a < pa + len; a += 1ULL << 21) {
        unsigned pdpt_i = (unsigned)(a >> 30), pd_i = (unsigned)(a >> 21) & 511;
        if (!(td_pdpt[pdpt_i] & 1)) {
            if (pd_used == TD_ARRAY_SIZE(pd_pool))
                return false;
            td_pdpt[pdpt_i] = (uint64_t)(uintptr_t)pd_pool[pd_used++] | 7;
        }
        uint64_t *pd = (uint64_t *)(td_pdpt[pdpt_i] & ~0xfffULL);
        if (!(pd[pd_i] & 1))
            pd[pd_i] = a | 0x87 | 0x18; /* present, writable, user, 2 MiB, uncached */
    }
    return true;
}
