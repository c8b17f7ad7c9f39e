/* vmm/tables.c: the firmware tables a BIOS-less guest reads to find its CPUs, interrupt
 * controllers and power management: the MP table (Intel MultiProcessor Specification 1.4) and
 * minimal ACPI tables (ACPI 6.5: RSDP, XSDT, RSDT, FADT with a PM1a event/control block and a PM
 * timer, FACS, a DSDT holding only \_S5, and the MADT). Pure functions over a buffer. */
#include <string.h>

#include "vmm/internal.h"

uint8_t vmm__checksum(const void *p, size_t len)
{
    const uint8_t *b = p;
    uint8_t s = 0;
    for (size_t i = 0; i < len; i++)
        s = (uint8_t)(s + b[i]);
    return s;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)v);
    put16(p + 2, (uint16_t)(v >> 16));
}
static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

/* ---- MP table ----------------------------------------------------------------------------- */
#define MP_BUS_PCI 0
#define MP_BUS_ISA 1

int vmm__mptable_build(uint8_t *buf, size_t cap, uint64_t gpa, unsigned ncpus)
{
    size_t need = 16 + 44 + ncpus * 20 + 2 * 8 + 8 + 16 * 8 + 31 * 8 + 2 * 8;
    uint8_t ioapic_id = (uint8_t)ncpus;
    if (need > cap || ncpus == 0 || ncpus > 254)
        return -ENOSPC;
    memset(buf, 0, need);
    /* Floating pointer structure, then the configuration table right after it. */
    uint8_t *fp = buf, *ct = buf + 16, *e = ct + 44;
    memcpy(fp, "_MP_", 4);
    put32(fp + 4, (uint32_t)(gpa + 16));
    fp[8] = 1; /* length in 16-byte units */
    fp[9] = 4; /* spec 1.4 */
    uint16_t count = 0;
    for (unsigned i = 0; i < ncpus; i++, e += 20, count++) {
        e[0] = 0; /* processor */
        e[1] = (uint8_t)i;
        e[2] = 0x14;                         /* local APIC version */
        e[3] = 1 | (i == 0 ? 2 : 0);         /* enabled, BSP */
        put32(e + 4, 0x600);                 /* family 6 */
        put32(e + 8, (1u << 0) | (1u << 9)); /* FPU, APIC */
    }
    e[0] = 1, e[1] = MP_BUS_PCI, memcpy(e + 2, "PCI   ", 6), e += 8, count++;
    e[0] = 1, e[1] = MP_BUS_ISA, memcpy(e + 2, "ISA   ", 6), e += 8, count++;
    e[0] = 2; /* IOAPIC */
    e[1] = ioapic_id;
    e[2] = 0x11;
    e[3] = 1;
    put32(e + 4, (uint32_t)VMM_IOAPIC_BASE);
    e += 8, count++;
    for (unsigned irq = 0; irq < 16; irq++) {
        if (irq == 2)
            continue; /* the cascade */
        e[0] = 3;     /* I/O interrupt */
        e[1] = 0;     /* INT */
        /* The SCI is level-triggered, active high (as in the MADT); ISA IRQs conform. */
        put16(e + 2, irq == VMM_ACPI_SCI_IRQ ? 0x0d : 0);
        e[4] = MP_BUS_ISA;
        e[5] = (uint8_t)irq;
        e[6] = ioapic_id;
        e[7] = (uint8_t)(irq == 0 ? 2 : irq); /* the PIT is on pin 2 */
        e += 8, count++;
    }
    /* PCI INTA# of slots 1-31 (the PCI side's fixed routing: GSI 16 + slot mod 8, level). */
    for (unsigned slot = 1; slot < 32; slot++) {
        e[0] = 3;
        e[1] = 0;
        put16(e + 2, 0x0f); /* level-triggered, active low: PCI's convention */
        e[4] = MP_BUS_PCI;
        e[5] = (uint8_t)(slot << 2); /* device in bits 6:2, pin INTA# = 0 */
        e[6] = ioapic_id;
        e[7] = (uint8_t)VMM_PCI_INTX_GSI(slot);
        e += 8, count++;
    }
    /* LINT0: ExtINT (the PIC), LINT1: NMI, on every local APIC. */
    e[0] = 4, e[1] = 3, e[4] = MP_BUS_ISA, e[6] = 0xff, e[7] = 0, e += 8, count++;
    e[0] = 4, e[1] = 1, e[4] = MP_BUS_ISA, e[6] = 0xff, e[7] = 1, e += 8, count++;
    size_t ct_len = (size_t)(e - ct);
    memcpy(ct, "PCMP", 4);
    put16(ct + 4, (uint16_t)ct_len);
    ct[6] = 4;
    memcpy(ct + 8, "VDI     ", 8);
    memcpy(ct + 16, "VDI-VMM     ", 12);
    put16(ct + 34, count);
    put32(ct + 36, (uint32_t)VMM_LAPIC_BASE);
    ct[7] = (uint8_t)-vmm__checksum(ct, ct_len);
    fp[10] = (uint8_t)-vmm__checksum(fp, 16);
    return (int)(e - buf);
}

/* ---- ACPI --------------------------------------------------------------------------------- */
static void sdt_header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
    memcpy(t, sig, 4);
    put32(t + 4, len);
    t[8] = rev;
    memcpy(t + 10, "VDI   ", 6);
    memcpy(t + 16, "VDIVMM  ", 8);
    put32(t + 24, 1);
    memcpy(t + 28, "VDI ", 4);
    put32(t + 32, 1);
}

static void sdt_finish(uint8_t *t)
{
    uint32_t len =
        (uint32_t)t[4] | (uint32_t)t[5] << 8 | (uint32_t)t[6] << 16 | (uint32_t)t[7] << 24;
    t[9] = 0;
    t[9] = (uint8_t)-vmm__checksum(t, len);
}

/* Generic Address Structure in system I/O space. */
static void gas_io(uint8_t *g, uint8_t bits, uint8_t access, uint64_t port)
{
    g[0] = 1;
    g[1] = bits;
    g[2] = 0;
    g[3] = access;
    put64(g + 4, port);
}

/* DSDT body: Name (_S5, Package () { 5, 5, 0, 0 }) */
static const uint8_t dsdt_aml[] = {
    0x08, '_',  'S', '5', '_', 0x12, 0x08, 0x04, 0x0a, VMM_ACPI_S5_TYP, 0x0a, VMM_ACPI_S5_TYP,
    0x00, 0x00,
};

#define ALIGN16(x) (((x) + 15) & ~(size_t)15)

int vmm__acpi_build(uint8_t *buf, size_t cap, uint64_t gpa, unsigned ncpus)
{
    size_t rsdp = 0, xsdt = 0x40, rsdt = xsdt + 36 + 16, fadt = ALIGN16(rsdt + 36 + 8);
    size_t facs = (fadt + 244 + 63) & ~(size_t)63, dsdt = facs + 64;
    size_t madt = ALIGN16(dsdt + 36 + sizeof(dsdt_aml));
    size_t madt_len = 36 + 8 + ncpus * 8 + 12 + 2 * 10 + 6;
    size_t end = madt + madt_len;
    if (end > cap || ncpus == 0 || ncpus > 254)
        return -ENOSPC;
    memset(buf, 0, end);

    /* MADT: one local APIC per CPU, the IOAPIC, IRQ0 -> GSI2 and the SCI as level/high. */
    uint8_t *t = buf + madt, *e = t + 44;
    sdt_header(t, "APIC", (uint32_t)madt_len, 5);
    put32(t + 36, (uint32_t)VMM_LAPIC_BASE);
    put32(t + 40, 1); /* PCAT_COMPAT: there are 8259s */
    for (unsigned i = 0; i < ncpus; i++, e += 8) {
        e[0] = 0, e[1] = 8, e[2] = (uint8_t)i, e[3] = (uint8_t)i;
        put32(e + 4, 1);
    }
    e[0] = 1, e[1] = 12, e[2] = (uint8_t)ncpus;
    put32(e + 4, (uint32_t)VMM_IOAPIC_BASE);
    put32(e + 8, 0);
    e += 12;
    e[0] = 2, e[1] = 10, e[2] = 0, e[3] = 0;
    put32(e + 4, 2);
    put16(e + 8, 0);
    e += 10;
    e[0] = 2, e[1] = 10, e[2] = 0, e[3] = VMM_ACPI_SCI_IRQ;
    put32(e + 4, VMM_ACPI_SCI_IRQ);
    put16(e + 8, 0x000d); /* active high, level */
    e += 10;
    e[0] = 4, e[1] = 6, e[2] = 0xff;
    put16(e + 3, 0);
    e[5] = 1; /* LINT1 */
    sdt_finish(t);

    t = buf + dsdt;
    sdt_header(t, "DSDT", (uint32_t)(36 + sizeof(dsdt_aml)), 2);
    memcpy(t + 36, dsdt_aml, sizeof(dsdt_aml));
    sdt_finish(t);

    t = buf + facs;
    memcpy(t, "FACS", 4);
    put32(t + 4, 64);
    t[32] = 2; /* version */

    t = buf + fadt;
    sdt_header(t, "FACP", 244, 3);
    /* FIRMWARE_CTRL stays 0: X_FIRMWARE_CTRL below names the FACS (ACPI 6.5 §5.2.9). */
    put32(t + 40, (uint32_t)(gpa + dsdt));
    t[45] = 1; /* preferred PM profile: desktop */
    put16(t + 46, VMM_ACPI_SCI_IRQ);
    /* SMI_CMD 0: ACPI is always enabled (SCI_EN reads as set). */
    put32(t + 56, VMM_ACPI_PM_BASE);     /* PM1a_EVT_BLK */
    put32(t + 64, VMM_ACPI_PM_BASE + 4); /* PM1a_CNT_BLK */
    put32(t + 76, VMM_ACPI_PM_BASE + 8); /* PM_TMR_BLK */
    t[88] = 4;
    t[89] = 2;
    t[91] = 4;
    put16(t + 96, 101);         /* no C2 */
    put16(t + 98, 1001);        /* no C3 */
    t[108] = 0x32;              /* CMOS century register */
    put16(t + 109, 1 | 2 | 4);  /* legacy devices, an 8042, no VGA */
    put32(t + 112, 1 | 4 | 32); /* WBINVD, PROC_C1, no fixed sleep button */
    put64(t + 132, gpa + facs);
    put64(t + 140, gpa + dsdt);
    gas_io(t + 148, 32, 2, VMM_ACPI_PM_BASE);
    gas_io(t + 172, 16, 2, VMM_ACPI_PM_BASE + 4);
    gas_io(t + 208, 32, 3, VMM_ACPI_PM_BASE + 8);
    sdt_finish(t);

    t = buf + rsdt;
    sdt_header(t, "RSDT", 36 + 8, 1);
    put32(t + 36, (uint32_t)(gpa + fadt));
    put32(t + 40, (uint32_t)(gpa + madt));
    sdt_finish(t);

    t = buf + xsdt;
    sdt_header(t, "XSDT", 36 + 16, 1);
    put64(t + 36, gpa + fadt);
    put64(t + 44, gpa + madt);
    sdt_finish(t);

    t = buf + rsdp;
    memcpy(t, "RSD PTR ", 8);
    memcpy(t + 9, "VDI   ", 6);
    t[15] = 2;
    put32(t + 16, (uint32_t)(gpa + rsdt));
    put32(t + 20, 36);
    put64(t + 24, gpa + xsdt);
    t[8] = (uint8_t)-vmm__checksum(t, 20);
    t[32] = (uint8_t)-vmm__checksum(t, 36);
    return (int)end;
}
