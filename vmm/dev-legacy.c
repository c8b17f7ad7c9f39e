/* vmm/dev-legacy.c: the small PC devices a guest expects without a BIOS:
 *  - i8042 keyboard controller, enough for reset (command 0xfe, or output port bit 0 through
 *    0xd1) and for a driver's self-tests; no keyboard or mouse behind it;
 *  - port 0x92 (system control port A): bit 0 resets too;
 *  - CMOS RTC at 0x70/0x71 reading the host's UTC time (BCD or binary, 12 or 24 hour as status
 *    register B asks), with the memory size where firmware would put it; no alarm or periodic
 *    interrupts;
 *  - the ACPI PM1a event and control blocks and the PM timer the FADT names: SLP_EN with our
 *    \_S5 sleep type powers off; the power button (control socket `shutdown`) raises the SCI;
 *  - port 0x80 (POST codes, Linux's I/O delay): writes vanish quietly.
 */
#define VDI_LOG_TAG "vmm"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmm/internal.h"

/* ---- i8042 -------------------------------------------------------------------------------- */
struct i8042 {
    vmm_vm_t *vm;
    pthread_mutex_t lock;
    uint8_t cmd_byte, out, pending_cmd;
    bool obf;
};

static void i8042_rw(void *opaque, uint64_t off, void *data, uint32_t len, bool is_write)
{
    struct i8042 *k = opaque;
    uint8_t *d = data;
    bool reset = false;
    VDI_UNUSED(len);
    pthread_mutex_lock(&k->lock);
    if (off == 0) { /* port 0x60 */
        if (!is_write) {
            d[0] = k->out;
            k->obf = false;
        } else if (k->pending_cmd == 0x60) {
            k->cmd_byte = d[0];
            k->pending_cmd = 0;
        } else if (k->pending_cmd == 0xd1) {
            reset = !(d[0] & 1); /* output port bit 0 low: CPU reset */
            k->pending_cmd = 0;
        } else {
            /* A byte for the keyboard: there is none; answer like a missing device. */
            k->out = 0xfe;
            k->obf = true;
        }
    } else if (off == 4) { /* port 0x64 */
        if (!is_write) {
            d[0] = (uint8_t)((k->obf ? 1 : 0) | 0x04 | (k->pending_cmd ? 0x08 : 0));
        } else {
            switch (d[0]) {
            case 0x20:
                k->out = k->cmd_byte;
                k->obf = true;
                break;
            case 0x60:
            case 0xd1:
                k->pending_cmd = d[0];
                break;
            case 0xaa: /* controller self-test */
                k->out = 0x55;
                k->obf = true;
                break;
            case 0xab: /* keyboard interface test */
            case 0xa9: /* aux interface test */
                k->out = 0x00;
                k->obf = true;
                break;
            case 0xfe:
                reset = true;
                break;
            default:
                break;
            }
        }
    }
    pthread_mutex_unlock(&k->lock);
    if (reset)
        vmm__vm_request_stop(k->vm, VMM_STOP_REBOOT, "guest reset through the i8042");
}

static void port92_rw(void *opaque, uint64_t off, void *data, uint32_t len, bool is_write)
{
    VDI_UNUSED(off);
    VDI_UNUSED(len);
    if (is_write && (*(uint8_t *)data & 1))
        vmm__vm_request_stop(opaque, VMM_STOP_REBOOT, "guest reset through port 0x92");
    else if (!is_write)
        *(uint8_t *)data = 0x02; /* A20 on */
}

static void port80_rw(void *opaque, uint64_t off, void *data, uint32_t len, bool is_write)
{
    VDI_UNUSED(opaque);
    VDI_UNUSED(off);
    VDI_UNUSED(is_write);
    memset(data, 0, len);
}

/* ---- CMOS RTC ----------------------------------------------------------------------------- */
struct rtc {
    vmm_vm_t *vm;
    pthread_mutex_t lock;
    uint8_t index;
    uint8_t ram[128];
};

static uint8_t bcd(struct rtc *r, unsigned v)
{
    if (r->ram[0x0b] & 0x04)
        return (uint8_t)v;
    return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static uint8_t rtc_read(struct rtc *r, uint8_t idx)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    switch (idx) {
    case 0x00:
        return bcd(r, (unsigned)tm.tm_sec);
    case 0x02:
        return bcd(r, (unsigned)tm.tm_min);
    case 0x04:
        if (r->ram[0x0b] & 0x02)
            return bcd(r, (unsigned)tm.tm_hour);
        else {
            unsigned h = (unsigned)tm.tm_hour % 12;
            return (uint8_t)(bcd(r, h ? h : 12) | (tm.tm_hour >= 12 ? 0x80 : 0));
        }
    case 0x06:
        return bcd(r, (unsigned)tm.tm_wday + 1);
    case 0x07:
        return bcd(r, (unsigned)tm.tm_mday);
    case 0x08:
        return bcd(r, (unsigned)tm.tm_mon + 1);
    case 0x09:
        return bcd(r, (unsigned)(tm.tm_year % 100));
    case 0x32:
        return bcd(r, (unsigned)(tm.tm_year + 1900) / 100);
    case 0x0a:
        return r->ram[0x0a] & 0x7f; /* never "update in progress" */
    case 0x0c:
        return 0; /* no interrupt flags */
    case 0x0d:
        return 0x80; /* valid RAM and time */
    default:
        return r->ram[idx & 0x7f];
    }
}

static void rtc_rw(void *opaque, uint64_t off, void *data, uint32_t len, bool is_write)
{
    struct rtc *r = opaque;
    uint8_t *d = data;
    VDI_UNUSED(len);
    pthread_mutex_lock(&r->lock);
    if (off == 0) {
        if (is_write)
            r->index = d[0] & 0x7f; /* bit 7 masks NMIs */
        else
            d[0] = r->index;
    } else if (!is_write) {
        d[0] = rtc_read(r, r->index);
    } else if (r->index == 0x0a || r->index == 0x0b || r->index >= 0x0e) {
        /* Setting the clock is not supported: the guest keeps host time. */
        r->ram[r->index] = d[0];
    }
    pthread_mutex_unlock(&r->lock);
}

/* ---- ACPI PM ------------------------------------------------------------------------------ */
#define PM1_TMR_STS    0x0001
#define PM1_PWRBTN_STS 0x0100
#define PM1_WAK_STS    0x8000
#define PM1_SCI_EN     0x0001
#define PM1_SLP_EN     0x2000
#define PM_TIMER_HZ    3579545ULL

struct vmm_acpi_pm {
    vmm_vm_t *vm;
    pthread_mutex_t lock;
    uint16_t sts, en, cnt;
    bool sci;
};

static void pm_update_sci(struct vmm_acpi_pm *pm)
{
    bool level = pm->sts & pm->en & (PM1_TMR_STS | PM1_PWRBTN_STS);
    if (level != pm->sci) {
        pm->sci = level;
        vmm__irq_line(pm->vm, VMM_ACPI_SCI_IRQ, level);
    }
}

static uint32_t pm_timer(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned __int128 ns = (unsigned __int128)ts.tv_sec * 1000000000u + (unsigned)ts.tv_nsec;
    return (uint32_t)((ns * PM_TIMER_HZ / 1000000000u) & 0xffffff);
}

static uint16_t *pm_reg(struct vmm_acpi_pm *pm, unsigned reg)
{
    switch (reg) {
    case 0:
        return &pm->sts;
    case 2:
        return &pm->en;
    case 4:
        return &pm->cnt;
    default:
        return NULL;
    }
}

static void pm_rw(void *opaque, uint64_t off, void *data, uint32_t len, bool is_write)
{
    struct vmm_acpi_pm *pm = opaque;
    uint8_t *d = data;
    bool poweroff = false;
    uint16_t bad_typ = 0xffff;

    pthread_mutex_lock(&pm->lock);
    if (off >= 8) { /* PM timer */
        if (!is_write) {
            uint32_t t = pm_timer() >> (8 * (off - 8));
            for (uint32_t i = 0; i < len; i++)
                d[i] = (uint8_t)(t >> (8 * i));
        }
        pthread_mutex_unlock(&pm->lock);
        return;
    }
    /* Byte-wise over the 16-bit registers, so 1-, 2- and 4-byte accesses all work. */
    for (unsigned reg = (unsigned)off & ~1u; reg < off + len && reg < 8; reg += 2) {
        uint16_t *r = pm_reg(pm, reg);
        uint16_t val = 0, mask = 0;
        for (unsigned b = 0; b < 2; b++) {
            uint64_t a = reg + b;
            if (a < off || a >= off + len)
                continue;
            mask |= (uint16_t)(0xff << (8 * b));
            if (is_write)
                val |= (uint16_t)(d[a - off] << (8 * b));
            else if (r) {
                uint16_t cur = *r;
                if (reg == 4)
                    cur |= PM1_SCI_EN; /* ACPI mode, always */
                d[a - off] = (uint8_t)(cur >> (8 * b));
            }
        }
        if (!is_write || !r)
            continue;
        if (reg == 0) {
            pm->sts &= (uint16_t) ~(val & mask); /* write 1 to clear */
        } else if (reg == 2) {
            pm->en = (uint16_t)((pm->en & ~mask) | (val & mask));
        } else {
            uint16_t v = (uint16_t)((pm->cnt & ~mask) | (val & mask));
            pm->cnt = v & (uint16_t)~PM1_SLP_EN;
            if (v & PM1_SLP_EN) {
                unsigned typ = (v >> 10) & 7;
                if (typ == VMM_ACPI_S5_TYP)
                    poweroff = true;
                else
                    bad_typ = (uint16_t)typ;
            }
        }
    }
    pm_update_sci(pm);
    pthread_mutex_unlock(&pm->lock);
    if (poweroff)
        vmm__vm_request_stop(pm->vm, VMM_STOP_POWEROFF, "guest powered off (ACPI S5)");
    else if (bad_typ != 0xffff)
        VDI_LOG_WARN_RL("vm=%s guest asked for ACPI sleep type %u, which we do not offer",
                        vmm__vm_name(pm->vm), bad_typ);
}

int vmm__acpi_pm_power_button(struct vmm_acpi_pm *pm)
{
    int err = 0;
    pthread_mutex_lock(&pm->lock);
    pm->sts |= PM1_PWRBTN_STS;
    if (!(pm->en & PM1_PWRBTN_STS))
        err = -ENOTSUP;
    pm_update_sci(pm);
    pthread_mutex_unlock(&pm->lock);
    return err;
}

static void free_i8042(void *p)
{
    struct i8042 *k = p;
    pthread_mutex_destroy(&k->lock);
    free(k);
}
static void free_rtc(void *p)
{
    struct rtc *r = p;
    pthread_mutex_destroy(&r->lock);
    free(r);
}
static void free_pm(void *p)
{
    struct vmm_acpi_pm *pm = p;
    pthread_mutex_destroy(&pm->lock);
    free(pm);
}

int vmm__legacy_setup(vmm_vm_t *vm)
{
    int err;
    struct i8042 *k = vdi_xcalloc(1, sizeof(*k));
    k->vm = vm;
    k->cmd_byte = 0x61; /* translate, system flag, keyboard interrupt */
    pthread_mutex_init(&k->lock, NULL);
    vmm__vm_own(vm, k, free_i8042);
    if ((err = vmm__io_add(vm, VMM_IO_PIO, 0x60, 5, i8042_rw, k, NULL)) < 0)
        return err;
    if ((err = vmm__io_add(vm, VMM_IO_PIO, 0x92, 1, port92_rw, vm, NULL)) < 0)
        return err;
    if ((err = vmm__io_add(vm, VMM_IO_PIO, 0x80, 1, port80_rw, NULL, NULL)) < 0)
        return err;

    struct rtc *r = vdi_xcalloc(1, sizeof(*r));
    r->vm = vm;
    pthread_mutex_init(&r->lock, NULL);
    r->ram[0x0a] = 0x26; /* 32.768 kHz time base, 1024 Hz rate */
    r->ram[0x0b] = 0x02; /* 24-hour, BCD */
    /* Memory sizes where firmware leaves them (QEMU does the same): 0x34/0x35 in 64 KiB units
     * above 16 MiB, 0x5b-0x5d in 64 KiB units above 4 GiB. */
    uint64_t ram = vmm__ram_size(vm), low = VDI_MIN(ram, VMM_MMIO_HOLE_START);
    uint64_t above16 = low > (16ULL << 20) ? (low - (16ULL << 20)) >> 16 : 0;
    above16 = VDI_MIN(above16, 0xffffULL);
    r->ram[0x34] = (uint8_t)above16;
    r->ram[0x35] = (uint8_t)(above16 >> 8);
    uint64_t high = (ram - low) >> 16;
    r->ram[0x5b] = (uint8_t)high;
    r->ram[0x5c] = (uint8_t)(high >> 8);
    r->ram[0x5d] = (uint8_t)(high >> 16);
    vmm__vm_own(vm, r, free_rtc);
    if ((err = vmm__io_add(vm, VMM_IO_PIO, 0x70, 2, rtc_rw, r, NULL)) < 0)
        return err;

    struct vmm_acpi_pm *pm = vdi_xcalloc(1, sizeof(*pm));
    pm->vm = vm;
    pthread_mutex_init(&pm->lock, NULL);
    vmm__vm_own(vm, pm, free_pm);
    if ((err = vmm__io_add(vm, VMM_IO_PIO, VMM_ACPI_PM_BASE, 12, pm_rw, pm, NULL)) < 0)
        return err;
    vmm__vm_set_acpi_pm(vm, pm);
    return 0;
}
