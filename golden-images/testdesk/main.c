/* golden-images/testdesk/main.c: ring 3 from the first instruction after boot.S: the IDT, the
 * PVH start info and command line, interrupt controllers, the other CPUs, the devices, READY,
 * then the desktop loop (desk.c). Also td_fault, the one C function that runs in ring 0, and
 * td_crash, which takes the IDT away again. */
#include "golden-images/testdesk/td.h"
#include "golden-images/testdesk/desk.h"

#define PVH_MAGIC 0x336ec578

struct td_options td_opt;
static char cmdline[1024];

void td_fault(const uint64_t *f)
{
    td_printf("TESTDESK FAIL exception vector=%lu error=0x%lx rip=0x%lx cs=0x%lx rsp=0x%lx\n", f[0],
              f[1], f[2], f[3], f[5]);
}

static void idt_set(unsigned vec, void (*fn)(void), unsigned dpl)
{
    uint64_t a = (uint64_t)(uintptr_t)fn;
    uint64_t *g = (uint64_t *)(td_idt + vec * 16);
    g[0] = (a & 0xffff) | (0x08ULL << 16) | ((uint64_t)(0x8e | dpl << 5) << 40) |
           ((a >> 16 & 0xffff) << 48);
    g[1] = a >> 32;
}

static void idt_init(void)
{
    for (unsigned v = 0; v < 32; v++)
        idt_set(v, (void (*)(void))(uintptr_t)td_exc_stubs[v], 0);
    for (unsigned v = 32; v < 255; v++)
        idt_set(v, td_irq_stub, 0);
    idt_set(0xff, td_spurious_stub, 0);
}

/* The data area's `crash` file: a triple fault, which a VMM sees as the machine shutting down
 * (KVM_EXIT_SHUTDOWN, which vdi-vmm reports as `crashed`; QEMU resets, or stops with -no-reboot).
 * Ring 3 can write the IDT but not load IDTR, so it empties the table and faults: #UD finds no
 * valid gate (#GP), #GP finds none (a double fault), and #DF finds none, which shuts the
 * processor down (Intel SDM vol. 3 §6.15, interrupt 8). No interrupt can come first: ring 3
 * runs with interrupts off. The hardware (or the VMM) does the rest, none of it our ring 0. */
void td_crash(void)
{
    memset(td_idt, 0, 256 * 16);
    td_barrier();
    __asm__ volatile("ud2" ::: "memory");
    td_halt(); /* not reached */
}

/* The 8259s stay masked: everything comes through the LAPIC (MSI-X) and the IOAPIC. */
static void pic_mask(void)
{
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
}

/* ISA IRQ @irq -> @vector on this CPU, edge, active high (IOAPIC redirection table). */
void td_ioapic_route(unsigned irq, unsigned vector)
{
    wr32(TD_IOAPIC_BASE, 0x10 + 2 * irq + 1);
    wr32(TD_IOAPIC_BASE + 0x10, td_lapic_id() << 24);
    wr32(TD_IOAPIC_BASE, 0x10 + 2 * irq);
    wr32(TD_IOAPIC_BASE + 0x10, vector);
}

/* INIT, SIPI, SIPI to every other CPU (Intel SDM vol. 3 §8.4.4.1); they run the trampoline at
 * TD_TRAMPOLINE into long mode and count themselves in td_ap_count. */
static unsigned smp_start(void)
{
    unsigned want = td_acpi_cpu_count();
    if (want == 1)
        return 1;
    memcpy((void *)TD_TRAMPOLINE, td_tramp_start, (size_t)(td_tramp_end - td_tramp_start));
    td_lapic_icr(0, 0x000c4500); /* INIT, assert, all excluding self */
    td_udelay(10000);
    for (int i = 0; i < 2; i++) {
        td_lapic_icr(0, 0x000c4600 | (TD_TRAMPOLINE >> 12)); /* STARTUP */
        td_udelay(200);
    }
    /* Wait for the MADT's count, or 200 ms when there is no MADT (or a CPU never comes). */
    uint64_t end = td_now_us() + 200000;
    while (td_now_us() < end && (!want || td_ap_count + 1 < want))
        td_udelay(1000);
    return td_ap_count + 1;
}

static void parse_cmdline(void)
{
    char *p = cmdline;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        char *key = p, *val = NULL;
        bool quoted = false;
        char *w = p;
        for (; *p && (quoted || *p != ' '); p++) {
            if (*p == '"') {
                quoted = !quoted;
                continue;
            }
            if (*p == '=' && !val && !quoted) {
                *w++ = 0;
                val = w;
                continue;
            }
            *w++ = *p;
        }
        if (*p)
            p++;
        *w = 0;
        if (strncmp(key, "testdesk.", 9))
            continue;
        key += 9;
        if (!val)
            val = key + strlen(key);
        uint64_t v;
        if (!strcmp(key, "run"))
            td_opt.run = val;
        else if (!strcmp(key, "anim") && td_parse_u64(val, &v) && v <= 100)
            td_opt.anim = (unsigned)v;
        else if (!strcmp(key, "fps") && td_parse_u64(val, &v) && v >= 1 && v <= 240)
            td_opt.fps = (unsigned)v;
        else if (!strcmp(key, "hb") && td_parse_u64(val, &v) && v >= 1 && v <= 300)
            td_opt.hb = (unsigned)v;
        else if (!strcmp(key, "require"))
            td_opt.require = val;
        else if (!strcmp(key, "data") && td_parse_u64(val, &v) && v >= 1 && v < 8)
            td_opt.data_disk = (unsigned)v;
        else
            td_printf("TESTDESK FAIL option testdesk.%s=%s not understood\n", key, val);
    }
}

void td_user_main(uint32_t start_info)
{
    idt_init();
    td_serial_init();
    td_printf("\ntestdesk: started (PVH, long mode, ring 3)\n");
    const uint8_t *si = (const uint8_t *)(uintptr_t)start_info;
    if (*(const uint32_t *)si != PVH_MAGIC) {
        td_printf("TESTDESK FAIL boot hvm_start_info magic 0x%x\n", *(const uint32_t *)si);
        td_halt();
    }
    const char *cl = (const char *)*(const uint64_t *)(si + 24);
    if (cl) {
        size_t n = strlen(cl);
        if (n >= sizeof(cmdline))
            n = sizeof(cmdline) - 1;
        memcpy(cmdline, cl, n);
    }
    td_printf("testdesk: cmdline \"%s\"\n", cmdline);
    td_opt.fps = 30;
    td_opt.hb = 5;
    parse_cmdline();
    td_mem_init(start_info);
    td_acpi_init(*(const uint64_t *)(si + 32));
    pic_mask();
    td_lapic_init();
    td_time_init();
    unsigned cpus = smp_start();
    td_desk_run(cpus);
}
