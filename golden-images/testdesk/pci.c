/* golden-images/testdesk/pci.c: PCI configuration mechanism #1 (ports 0xcf8/0xcfc), the bus
 * scan, BAR sizing, and BAR assignment for BARs the firmware left at 0. */
#include "golden-images/testdesk/desk.h"

struct td_pci_dev td_pci_devs[TD_PCI_MAX];
unsigned td_pci_ndevs;
/* BARs nobody assigned (firmware such as qboot leaves that to the OS) go in the PCI hole: from
 * the end of low RAM (at least 0xc0000000, on a 256 MiB boundary) up to 0xfec00000 (IOAPIC). */
#define MMIO_WINDOW_END 0xfec00000ULL
static uint64_t next_mmio;

static uint32_t addr_of(uint8_t bus, uint8_t dev, uint8_t fn, unsigned off)
{
    return 0x80000000u | (uint32_t)bus << 16 | (uint32_t)dev << 11 | (uint32_t)fn << 8 |
           (off & 0xfc);
}

static uint32_t cfg_rd(uint8_t bus, uint8_t dev, uint8_t fn, unsigned off)
{
    outl(0xcf8, addr_of(bus, dev, fn, off));
    return inl(0xcfc);
}

static void cfg_wr(uint8_t bus, uint8_t dev, uint8_t fn, unsigned off, uint32_t v)
{
    outl(0xcf8, addr_of(bus, dev, fn, off));
    outl(0xcfc, v);
}

uint32_t td_pci_rd32(const struct td_pci_dev *d, unsigned off)
{
    return cfg_rd(d->bus, d->dev, d->fn, off);
}

uint16_t td_pci_rd16(const struct td_pci_dev *d, unsigned off)
{
    return (uint16_t)(cfg_rd(d->bus, d->dev, d->fn, off) >> ((off & 2) * 8));
}

uint8_t td_pci_rd8(const struct td_pci_dev *d, unsigned off)
{
    return (uint8_t)(cfg_rd(d->bus, d->dev, d->fn, off) >> ((off & 3) * 8));
}

void td_pci_wr32(const struct td_pci_dev *d, unsigned off, uint32_t v)
{
    cfg_wr(d->bus, d->dev, d->fn, off, v);
}

void td_pci_wr16(const struct td_pci_dev *d, unsigned off, uint16_t v)
{
    uint32_t old = cfg_rd(d->bus, d->dev, d->fn, off);
    unsigned sh = (off & 2) * 8;
    cfg_wr(d->bus, d->dev, d->fn, off, (old & ~(0xffffu << sh)) | (uint32_t)v << sh);
}

unsigned td_pci_cap(const struct td_pci_dev *d, uint8_t id, unsigned from)
{
    if (!(td_pci_rd16(d, 0x06) & 0x10)) /* status: capability list */
        return 0;
    unsigned p = from ? td_pci_rd8(d, from + 1) : td_pci_rd8(d, 0x34);
    for (int guard = 0; p >= 0x40 && guard < 48; guard++) {
        p &= 0xfc;
        if (td_pci_rd8(d, p) == id)
            return p;
        p = td_pci_rd8(d, p + 1);
    }
    return 0;
}

/* Size each BAR (write all ones, read back, restore), assign the unassigned memory BARs, and
 * turn on memory and I/O decoding and bus mastering. */
static void probe_bars(struct td_pci_dev *d)
{
    uint16_t cmd = td_pci_rd16(d, 0x04);
    td_pci_wr16(d, 0x04, cmd & ~0x7); /* decoding off while sizing */
    for (unsigned i = 0; i < 6; i++) {
        unsigned off = 0x10 + 4 * i;
        uint32_t lo = td_pci_rd32(d, off);
        td_pci_wr32(d, off, 0xffffffff);
        uint32_t szlo = td_pci_rd32(d, off);
        td_pci_wr32(d, off, lo);
        if (lo & 1) { /* I/O */
            d->bar_io[i] = true;
            d->bar[i] = lo & ~3u;
            d->bar_size[i] = szlo ? (uint16_t)(~(szlo & ~3u) + 1) : 0;
            continue;
        }
        bool is64 = ((lo >> 1) & 3) == 2;
        uint64_t base = lo & ~0xfu, mask = szlo & ~0xfu;
        if (is64 && i < 5) {
            uint32_t hi = td_pci_rd32(d, off + 4);
            td_pci_wr32(d, off + 4, 0xffffffff);
            uint32_t szhi = td_pci_rd32(d, off + 4);
            td_pci_wr32(d, off + 4, hi);
            base |= (uint64_t)hi << 32;
            mask |= (uint64_t)szhi << 32;
        } else if (mask) {
            mask |= 0xffffffff00000000ULL;
        }
        d->bar_size[i] = mask ? ~mask + 1 : 0;
        if (d->bar_size[i] && !base) {
            base = TD_ALIGN_UP(next_mmio, d->bar_size[i]);
            if (base + d->bar_size[i] > MMIO_WINDOW_END) {
                td_printf("TESTDESK FAIL pci %02x:%02x.%x BAR%u (%lu bytes) does not fit the "
                          "PCI hole\n",
                          d->bus, d->dev, d->fn, i, d->bar_size[i]);
                base = 0;
            } else {
                next_mmio = base + d->bar_size[i];
                td_pci_wr32(d, off, (uint32_t)base | (lo & 0xf));
                if (is64)
                    td_pci_wr32(d, off + 4, (uint32_t)(base >> 32));
            }
        }
        d->bar[i] = base;
        if (is64)
            i++;
    }
    td_pci_wr16(d, 0x04, cmd | 0x7); /* I/O, memory, bus master */
}

static void scan_bus(uint8_t bus, int depth)
{
    for (uint8_t dev = 0; dev < 32; dev++) {
        for (uint8_t fn = 0; fn < 8; fn++) {
            uint32_t id = cfg_rd(bus, dev, fn, 0);
            if ((id & 0xffff) == 0xffff) {
                if (fn == 0)
                    break;
                continue;
            }
            uint8_t hdr = (uint8_t)(cfg_rd(bus, dev, fn, 0x0c) >> 16);
            if ((hdr & 0x7f) == 1 && depth < 4) { /* PCI-to-PCI bridge */
                uint8_t sec = (uint8_t)(cfg_rd(bus, dev, fn, 0x18) >> 8);
                if (sec > bus)
                    scan_bus(sec, depth + 1);
            } else if ((hdr & 0x7f) == 0 && td_pci_ndevs < TD_PCI_MAX) {
                struct td_pci_dev *d = &td_pci_devs[td_pci_ndevs++];
                d->bus = bus;
                d->dev = dev;
                d->fn = fn;
                d->vendor = (uint16_t)id;
                d->device = (uint16_t)(id >> 16);
                d->class_rev = cfg_rd(bus, dev, fn, 0x08);
                d->subsys = (uint16_t)(cfg_rd(bus, dev, fn, 0x2c) >> 16);
                /* Host bridges and ISA bridges: leave their BARs alone. */
                if ((d->class_rev >> 24) != 0x06)
                    probe_bars(d);
                td_printf("testdesk: pci %02x:%02x.%x %04x:%04x class %06x\n", bus, dev, fn,
                          d->vendor, d->device, d->class_rev >> 8);
            }
            if (fn == 0 && !(hdr & 0x80))
                break; /* single-function */
        }
    }
}

void td_pci_scan(void)
{
    next_mmio = td_mem_low_end() > 0xc0000000 ? td_mem_low_end() : 0xc0000000;
    next_mmio = TD_ALIGN_UP(next_mmio, 0x10000000);
    scan_bus(0, 0);
}
