/* golden-images/testdesk/time.c: TSC and LAPIC timer (calibrated against PIT channel 2), the xAPIC
 * registers ring 3 uses (the LAPIC page is mapped for it), and the CMOS clock. */
#include "golden-images/testdesk/td.h"

#define LAPIC_ID    0x20
#define LAPIC_TPR   0x80
#define LAPIC_EOI   0xb0
#define LAPIC_SVR   0xf0
#define LAPIC_ICRLO 0x300
#define LAPIC_ICRHI 0x310
#define LAPIC_LVTT  0x320
#define LAPIC_LINT0 0x350
#define LAPIC_LINT1 0x360
#define LAPIC_LVTE  0x370
#define LAPIC_TICR  0x380
#define LAPIC_TCCR  0x390
#define LAPIC_TDCR  0x3e0

#define PIT_HZ      1193182u

uint64_t td_tsc_khz;
static uint64_t lapic_khz;
static uint64_t tsc_base;

static uint32_t lapic_rd(uint32_t reg)
{
    return rd32(TD_LAPIC_BASE + reg);
}

static void lapic_wr(uint32_t reg, uint32_t v)
{
    wr32(TD_LAPIC_BASE + reg, v);
}

void td_lapic_init(void)
{
    lapic_wr(LAPIC_TPR, 0);
    lapic_wr(LAPIC_SVR, 0x100 | 0xff); /* software enable, spurious vector 0xff */
    lapic_wr(LAPIC_LVTE, 0x10000);     /* error interrupt masked */
    lapic_wr(LAPIC_TDCR, 0xb);         /* divide by 1 */
    lapic_wr(LAPIC_LVTT, 0x10000);     /* timer masked until calibrated */
}

uint32_t td_lapic_id(void)
{
    return lapic_rd(LAPIC_ID) >> 24;
}

void td_lapic_icr(uint32_t dest, uint32_t low)
{
    lapic_wr(LAPIC_ICRHI, dest << 24);
    lapic_wr(LAPIC_ICRLO, low);
    for (int i = 0; i < 1000 && (lapic_rd(LAPIC_ICRLO) & 0x1000); i++) /* delivery status */
        ;
}

/* One 10 ms window of PIT channel 2 (mode 0, gate on, speaker off), the way Linux's
 * pit_calibrate_tsc does it: TSC ticks and LAPIC timer counts seen in it. */
static bool pit_window(uint64_t *tsc, uint32_t *lapic)
{
    uint32_t latch = PIT_HZ / 100;
    outb(0x61, (inb(0x61) & ~0x02) | 0x01);
    outb(0x43, 0xb0);
    outb(0x42, latch & 0xff);
    outb(0x42, latch >> 8);
    uint64_t t0 = rdtsc();
    uint32_t c0 = lapic_rd(LAPIC_TCCR);
    uint32_t loops = 0;
    /* Each read is a port exit (1-15 us): 200000 of them outlast any 10 ms window. */
    while (!(inb(0x61) & 0x20))
        if (++loops == 200000)
            return false;
    *tsc = rdtsc() - t0;
    *lapic = c0 - lapic_rd(LAPIC_TCCR);
    return true;
}

/* Calibrate the TSC and the LAPIC timer: the shortest of three PIT windows (a port read that
 * was delayed by the host only ever lengthens a window). */
void td_time_init(void)
{
    uint32_t r[4];
    uint64_t tsc = UINT64_MAX;
    uint32_t lapic = 0;
    lapic_wr(LAPIC_TICR, 0xffffffff); /* free-running count-down while masked */
    for (int i = 0; i < 3; i++) {
        uint64_t t;
        uint32_t l;
        if (!pit_window(&t, &l)) {
            td_printf("testdesk: PIT channel 2 does not count\n");
            tsc = 0;
            lapic = 0;
            break;
        }
        if (t < tsc) {
            tsc = t;
            lapic = l;
        }
    }
    lapic_wr(LAPIC_TICR, 0);
    td_tsc_khz = tsc / 10;
    lapic_khz = lapic / 10;
    /* CPUID 0x40000010 (hypervisor timing leaf) where offered: exact, unlike a 10 ms sample. */
    cpuid(1, 0, r);
    bool hypervisor = r[2] & (1u << 31);
    cpuid(0x40000000, 0, r);
    if (hypervisor && r[0] >= 0x40000010 && r[0] < 0x40000100) {
        cpuid(0x40000010, 0, r);
        if (r[0] && r[1]) {
            td_tsc_khz = r[0];
            lapic_khz = r[1];
        }
    }
    if (!td_tsc_khz) {
        cpuid(0, 0, r);
        uint32_t max = r[0];
        if (max >= 0x16) {
            cpuid(0x16, 0, r); /* processor base frequency, MHz */
            td_tsc_khz = (uint64_t)(r[0] & 0xffff) * 1000;
        }
    }
    if (!td_tsc_khz || !lapic_khz) {
        td_printf("TESTDESK FAIL timer calibration failed: assuming 1 GHz\n");
        if (!td_tsc_khz)
            td_tsc_khz = 1000000;
        if (!lapic_khz)
            lapic_khz = 1000000; /* KVM's and QEMU's LAPIC timer run at 1 GHz */
    }
    tsc_base = rdtsc();
    lapic_wr(LAPIC_LVTT, 0x20); /* one-shot, vector 0x20 */
    td_printf("testdesk: tsc %lu kHz, lapic timer %lu kHz\n", td_tsc_khz, lapic_khz);
}

uint64_t td_now_us(void)
{
    return (rdtsc() - tsc_base) * 1000 / td_tsc_khz;
}

void td_udelay(uint64_t us)
{
    uint64_t end = rdtsc() + us * td_tsc_khz / 1000;
    while (rdtsc() < end)
        __asm__ volatile("pause");
}

void td_timer_arm(uint64_t us)
{
    uint64_t count = us * lapic_khz / 1000;
    if (us && !count)
        count = 1;
    if (count > 0xffffffffu)
        count = 0xffffffffu;
    lapic_wr(LAPIC_TICR, (uint32_t)count);
}

static uint8_t cmos(uint8_t reg)
{
    outb(0x70, reg);
    return inb(0x71);
}

static uint32_t bcd(uint8_t v, bool binary)
{
    return binary ? v : (uint32_t)((v >> 4) * 10 + (v & 15));
}

uint32_t td_rtc_seconds(void)
{
    uint8_t s, m, h, b;
    /* Wait out an update in progress (register A bit 7), bounded. */
    for (int i = 0; i < 1000 && (cmos(0x0a) & 0x80); i++)
        ;
    s = cmos(0x00);
    m = cmos(0x02);
    h = cmos(0x04);
    b = cmos(0x0b);
    bool binary = b & 0x04;
    bool pm = !(b & 0x02) && (h & 0x80);
    uint32_t hh = bcd(h & 0x7f, binary);
    if (!(b & 0x02)) /* 12-hour mode */
        hh = (hh % 12) + (pm ? 12 : 0);
    return hh * 3600 + bcd(m, binary) * 60 + bcd(s, binary);
}
