/* golden-images/testdesk/td.h: what the files of testdesk share.
 *
 * testdesk is a freestanding guest: no libc, one address space identity-mapped with the user bit
 * set, ring 3 with IOPL 3 for everything except the few ring-0 stubs in boot.S. Every function
 * here runs in ring 3 on the boot CPU unless its comment says otherwise; nothing is thread-safe
 * (the other CPUs only count themselves in and halt).
 */
#ifndef TD_H
#define TD_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "golden-images/testdesk/asm.h"

#define TD_ARRAY_SIZE(a)  (sizeof(a) / sizeof((a)[0]))
#define TD_ALIGN_UP(x, a) (((x) + (a)-1) & ~((uint64_t)(a)-1))

/* ---- Port and memory-mapped I/O ----------------------------------------------------------- */
static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outw(uint16_t port, uint16_t v)
{
    __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outl(uint16_t port, uint32_t v)
{
    __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint16_t inw(uint16_t port)
{
    uint16_t v;
    __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint32_t inl(uint16_t port)
{
    uint32_t v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint8_t rd8(uint64_t a)
{
    return *(volatile uint8_t *)a;
}
static inline uint16_t rd16(uint64_t a)
{
    return *(volatile uint16_t *)a;
}
static inline uint32_t rd32(uint64_t a)
{
    return *(volatile uint32_t *)a;
}
static inline uint64_t rd64(uint64_t a)
{
    return *(volatile uint64_t *)a;
}
static inline void wr8(uint64_t a, uint8_t v)
{
    *(volatile uint8_t *)a = v;
}
static inline void wr16(uint64_t a, uint16_t v)
{
    *(volatile uint16_t *)a = v;
}
static inline void wr32(uint64_t a, uint32_t v)
{
    *(volatile uint32_t *)a = v;
}
static inline void wr64(uint64_t a, uint64_t v)
{
    *(volatile uint64_t *)a = v;
}
static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}
static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    __asm__ volatile("cpuid"
                     : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
                     : "a"(leaf), "c"(sub));
}
/* Order our memory accesses against a device's (x86 is strongly ordered; stop the compiler). */
static inline void td_barrier(void)
{
    __asm__ volatile("mfence" ::: "memory");
}

/* ---- boot.S (ring 0) ---------------------------------------------------------------------- */
extern uint64_t td_start_info;
extern volatile uint64_t td_irq_count;
extern volatile uint32_t td_ap_count;
extern uint8_t td_idt[];
extern uint64_t td_pml4[], td_pdpt[];
extern const uint64_t td_exc_stubs[32];
extern const uint8_t td_tramp_start[], td_tramp_end[];
extern uint8_t td_image_end[];
void td_irq_stub(void);
void td_spurious_stub(void);
void td_user_main(uint32_t start_info) __attribute__((noreturn));
void td_fault(const uint64_t *frame); /* ring 0: vector, error, rip, cs, rflags, rsp, ss */

/* Sleep in ring 0 until an interrupt, unless one came since ring 3 saw @seen interrupts.
 * Returns the interrupt count. The call is a `hlt` in ring 3: its #GP is the way in (boot.S). */
static inline uint64_t td_sleep(uint64_t seen)
{
    uint64_t rax = 0;
    __asm__ volatile("hlt" : "+a"(rax) : "D"(seen) : "memory");
    return rax;
}
__attribute__((noreturn)) static inline void td_halt(void)
{
    for (;;)
        __asm__ volatile("hlt" : : "a"(1UL) : "memory");
}
/* Crash on purpose with a triple fault (main.c): no ring-0 code of ours runs. */
void td_crash(void) __attribute__((noreturn));

/* ---- lib.c: strings, formatting, the serial console --------------------------------------- */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
int td_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int td_snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Print on COM1 (works in ring 0 too: td_fault uses it). */
void td_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void td_serial_init(void);
int td_serial_getc(void); /* -1 when nothing is waiting */
/* Parse an unsigned number (decimal, or hex with 0x); false if @s is not one. */
bool td_parse_u64(const char *s, uint64_t *out);

/* ---- time.c ------------------------------------------------------------------------------- */
extern uint64_t td_tsc_khz;
void td_time_init(void); /* calibrates the TSC and the LAPIC timer against the PIT */
uint64_t td_now_us(void);
void td_udelay(uint64_t us);
/* Arm the LAPIC timer to fire in @us microseconds (0: disarm). */
void td_timer_arm(uint64_t us);
void td_lapic_init(void);
uint32_t td_lapic_id(void);
void td_lapic_icr(uint32_t dest, uint32_t low);
/* The CMOS clock, as seconds since midnight (UTC). */
uint32_t td_rtc_seconds(void);

/* ---- acpi.c ------------------------------------------------------------------------------- */
/* Find the tables (@rsdp from PVH, else the BIOS-area scan): FADT for power-off, MADT for the
 * CPU count. Returns 0 or -1 (reported on serial). */
int td_acpi_init(uint64_t rsdp);
unsigned td_acpi_cpu_count(void); /* enabled processors in the MADT; 0 without one */
void td_poweroff(void) __attribute__((noreturn));
void td_reboot(void) __attribute__((noreturn));

/* ---- mem.c: physical memory for queues and buffers ---------------------------------------- */
void td_mem_init(uint64_t start_info);
uint64_t td_mem_low_end(void); /* end of the highest RAM range below 4 GiB */
/* Zeroed, @align-aligned memory below 4 GiB that is never freed; NULL when out of memory. */
void *td_alloc(uint64_t size, uint64_t align);
/* Make [pa, pa+len) reachable (identity, user); false when it cannot be mapped. */
bool td_map(uint64_t pa, uint64_t len);

#endif
