/* golden-images/testdesk/acpi.c: just enough ACPI for power-off (FADT PM1a/PM1b control blocks,
 * or the hardware-reduced sleep control register, with SLP_TYP from the DSDT's \_S5 package) and
 * the CPU count (MADT). ACPI 6.4 §5.2 (tables), §7.4.2 (\_S5), §4.8.3.2 (PM1 control). */
#include "golden-images/testdesk/td.h"

struct sdt_header {
    char sig[4];
    uint32_t length;
    uint8_t revision, checksum;
    char oem[6], oem_table[8];
    uint32_t oem_rev, creator, creator_rev;
} __attribute__((packed));

static uint32_t pm1a_cnt, pm1b_cnt;
static uint64_t sleep_ctl; /* hardware-reduced: SLEEP_CONTROL_REG (I/O port) */
static uint8_t slp_typa, slp_typb;
static bool have_s5;
static unsigned madt_cpus;

static bool checksum_ok(const void *p, uint32_t len)
{
    const uint8_t *b = p;
    uint8_t sum = 0;
    for (uint32_t i = 0; i < len; i++)
        sum += b[i];
    return sum == 0;
}

static uint64_t find_rsdp_in(uint64_t start, uint64_t end)
{
    for (uint64_t a = start; a + 20 <= end; a += 16)
        if (!memcmp((const void *)a, "RSD PTR ", 8) && checksum_ok((const void *)a, 20))
            return a;
    return 0;
}

/* ACPI 6.4 §5.2.5.1: the EBDA's first KiB, then 0xE0000..0xFFFFF. */
static uint64_t find_rsdp(void)
{
    uint64_t ebda = (uint64_t)rd16(0x40e) << 4;
    uint64_t a = 0;
    if (ebda >= 0x80000 && ebda < 0xa0000)
        a = find_rsdp_in(ebda, ebda + 1024);
    return a ? a : find_rsdp_in(0xe0000, 0x100000);
}

static const struct sdt_header *table_at(uint64_t pa)
{
    if (!pa || pa >= (4ULL << 30) || !td_map(pa, sizeof(struct sdt_header)))
        return NULL;
    const struct sdt_header *h = (const void *)pa;
    if (h->length < sizeof(*h) || h->length > (16u << 20) || !td_map(pa, h->length))
        return NULL;
    return h;
}

/* The AML of \_S5: NameOp '_S5_' PackageOp PkgLength NumElements SLP_TYPa SLP_TYPb ... */
static int aml_byte(const uint8_t *p, uint8_t *out)
{
    if (p[0] == 0x0a) { /* BytePrefix */
        *out = p[1];
        return 2;
    }
    if (p[0] == 0x00 || p[0] == 0x01) { /* ZeroOp, OneOp */
        *out = p[0];
        return 1;
    }
    if (p[0] == 0xff) /* OnesOp */
        return -1;
    *out = p[0];
    return 1;
}

static void parse_s5(const struct sdt_header *dsdt)
{
    const uint8_t *p = (const uint8_t *)dsdt + sizeof(*dsdt);
    const uint8_t *end = (const uint8_t *)dsdt + dsdt->length;
    for (; p + 12 < end; p++) {
        if (memcmp(p, "_S5_", 4))
            continue;
        /* NameOp directly before (optionally with a root '\' prefix). */
        if (!(p[-1] == 0x08 || (p[-1] == '\\' && p[-2] == 0x08)))
            continue;
        const uint8_t *q = p + 4;
        if (*q++ != 0x12) /* PackageOp */
            continue;
        q += ((*q >> 6) & 3) + 1; /* PkgLength: lead byte plus 0..3 more */
        q++;                      /* NumElements */
        int n = aml_byte(q, &slp_typa);
        if (n < 0 || aml_byte(q + n, &slp_typb) < 0)
            continue;
        have_s5 = true;
        return;
    }
}

static void parse_fadt(const struct sdt_header *f)
{
    const uint8_t *b = (const uint8_t *)f;
    uint64_t dsdt = 0;
    if (f->length >= 44)
        dsdt = *(const uint32_t *)(b + 40);
    if (f->length >= 148 && *(const uint64_t *)(b + 140))
        dsdt = *(const uint64_t *)(b + 140); /* X_DSDT */
    if (f->length >= 68)
        pm1a_cnt = *(const uint32_t *)(b + 64);
    if (f->length >= 72)
        pm1b_cnt = *(const uint32_t *)(b + 68);
    uint32_t flags = f->length >= 116 ? *(const uint32_t *)(b + 112) : 0;
    /* Hardware-reduced ACPI (flags bit 20): SLEEP_CONTROL_REG, a GAS at offset 244. */
    if ((flags & (1u << 20)) && f->length >= 256 && b[244] == 1 /* system I/O */)
        sleep_ctl = *(const uint64_t *)(b + 248);
    const struct sdt_header *d = table_at(dsdt);
    if (d && !memcmp(d->sig, "DSDT", 4))
        parse_s5(d);
}

static void parse_madt(const struct sdt_header *m)
{
    const uint8_t *p = (const uint8_t *)m + sizeof(*m) + 8; /* local APIC address, flags */
    const uint8_t *end = (const uint8_t *)m + m->length;
    while (p + 2 <= end && p[1] >= 2 && p + p[1] <= end) {
        if (p[0] == 0 && p[1] >= 8 && (*(const uint32_t *)(p + 4) & 1)) /* local APIC, enabled */
            madt_cpus++;
        else if (p[0] == 9 && p[1] >= 16 && (*(const uint32_t *)(p + 8) & 1)) /* x2APIC */
            madt_cpus++;
        p += p[1];
    }
}

int td_acpi_init(uint64_t rsdp)
{
    if (!rsdp)
        rsdp = find_rsdp();
    if (!rsdp || memcmp((const void *)rsdp, "RSD PTR ", 8)) {
        td_printf("testdesk: no ACPI RSDP\n");
        return -1;
    }
    const uint8_t *r = (const uint8_t *)rsdp;
    uint64_t root = *(const uint32_t *)(r + 16);
    unsigned entry = 4;
    if (r[15] >= 2 && *(const uint64_t *)(r + 24)) { /* revision 2: XSDT */
        root = *(const uint64_t *)(r + 24);
        entry = 8;
    }
    const struct sdt_header *rt = table_at(root);
    if (!rt) {
        td_printf("testdesk: ACPI root table at 0x%lx unreadable\n", root);
        return -1;
    }
    unsigned n = (rt->length - sizeof(*rt)) / entry;
    for (unsigned i = 0; i < n; i++) {
        const uint8_t *e = (const uint8_t *)rt + sizeof(*rt) + i * entry;
        uint64_t pa = entry == 8 ? *(const uint64_t *)e : *(const uint32_t *)e;
        const struct sdt_header *t = table_at(pa);
        if (!t)
            continue;
        if (!memcmp(t->sig, "FACP", 4))
            parse_fadt(t);
        else if (!memcmp(t->sig, "APIC", 4))
            parse_madt(t);
    }
    td_printf("testdesk: acpi rsdp=0x%lx pm1a_cnt=0x%x s5=%s slp_typ=%u cpus=%u\n", rsdp, pm1a_cnt,
              have_s5 ? "yes" : "no", slp_typa, madt_cpus);
    return 0;
}

unsigned td_acpi_cpu_count(void)
{
    return madt_cpus;
}

void td_poweroff(void)
{
    td_printf("testdesk: powering off\n");
    if (have_s5 && pm1a_cnt) {
        outw((uint16_t)pm1a_cnt, (uint16_t)((slp_typa & 7) << 10 | 1 << 13));
        if (pm1b_cnt)
            outw((uint16_t)pm1b_cnt, (uint16_t)((slp_typb & 7) << 10 | 1 << 13));
    } else if (have_s5 && sleep_ctl) {
        outb((uint16_t)sleep_ctl, (uint8_t)((slp_typa & 7) << 2 | 1 << 5));
    }
    td_udelay(100000);
    td_printf("TESTDESK FAIL poweroff %s\n",
              have_s5 ? "the machine is still running after SLP_EN" : "no ACPI \\_S5");
    td_halt();
}

void td_reboot(void)
{
    td_printf("testdesk: rebooting\n");
    for (int i = 0; i < 1000 && (inb(0x64) & 0x02); i++) /* input buffer full */
        ;
    outb(0x64, 0xfe); /* i8042: pulse the reset line */
    td_udelay(100000);
    td_printf("TESTDESK FAIL reboot the machine is still running after i8042 reset\n");
    td_halt();
}
