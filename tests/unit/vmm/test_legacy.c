/* tests/unit/vmm/test_legacy.c: the legacy PC devices (dev-uart.c, dev-legacy.c) driven through
 * the port dispatch of a VM without KVM (interrupt lines go nowhere): the ACPI PM block (power
 * button, write-1-to-clear, S5 power-off), the i8042 (self-test, reset), the CMOS RTC (valid
 * time in BCD and binary), the UART (line status, divisor latch, loopback; a guest flooding COM1
 * is never held up, its escape sequences do not reach the log and the log stays under
 * --serial-log-max), and a burst of random
 * accesses of every width to every port, which must never crash. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/vmm/bare_vm.h"

/* A bare VM (no KVM) with the UART and the legacy devices, 64 MiB of RAM as the RTC reports it. */
static vmm_vm_t *new_vm(void)
{
    vmm_vm_t *vm = bare_vm_new();
    vm->ram_size = vm->low_size = 64ULL << 20;
    struct vmm_config cfg = {.serial_log = "/dev/null"};
    assert_int_equal(vmm__uart_setup(vm, &cfg), 0);
    assert_int_equal(vmm__legacy_setup(vm), 0);
    return vm;
}

static uint32_t in(vmm_vm_t *vm, uint16_t port, uint32_t len)
{
    uint32_t v = 0;
    vmm__io_dispatch(vm, VMM_IO_PIO, port, &v, len, false);
    return v;
}

static void out(vmm_vm_t *vm, uint16_t port, uint32_t len, uint32_t v)
{
    vmm__io_dispatch(vm, VMM_IO_PIO, port, &v, len, true);
}

static void test_acpi_pm(void **state)
{
    (void)state;
    vmm_vm_t *vm = new_vm();
    const uint16_t sts = VMM_ACPI_PM_BASE, en = VMM_ACPI_PM_BASE + 2, cnt = VMM_ACPI_PM_BASE + 4;
    assert_true(in(vm, cnt, 2) & 1); /* SCI_EN: always in ACPI mode */
    /* The button before the guest enabled it: status set, but the guest was not told. */
    assert_int_equal(vmm__vm_power_button(vm), -ENOTSUP);
    assert_true(in(vm, sts, 2) & 0x100);
    out(vm, sts, 2, 0x100); /* write 1 to clear */
    assert_false(in(vm, sts, 2) & 0x100);
    out(vm, en, 2, 0x100);
    assert_int_equal(in(vm, en, 2), 0x100);
    assert_int_equal(vmm__vm_power_button(vm), 0);
    /* A 4-byte read of the event block sees status and enable at once. */
    assert_int_equal(in(vm, sts, 4), 0x01000100);
    /* The PM timer moves. */
    uint32_t t0 = in(vm, VMM_ACPI_PM_BASE + 8, 4);
    usleep(2000);
    assert_true(in(vm, VMM_ACPI_PM_BASE + 8, 4) != t0);
    assert_true(in(vm, VMM_ACPI_PM_BASE + 8, 4) <= 0xffffff);
    /* A sleep type we do not offer: nothing happens. */
    out(vm, cnt, 2, (3 << 10) | (1 << 13));
    assert_false(atomic_load(&vm->stopping));
    /* S5 with SLP_EN: power-off. */
    out(vm, cnt, 2, (VMM_ACPI_S5_TYP << 10) | (1 << 13));
    assert_true(atomic_load(&vm->stopping));
    assert_int_equal(vm->stop_reason, VMM_STOP_POWEROFF);
    vmm__vm_destroy(vm);
}

static void test_i8042(void **state)
{
    (void)state;
    vmm_vm_t *vm = new_vm();
    out(vm, 0x64, 1, 0xaa);
    assert_true(in(vm, 0x64, 1) & 1); /* output buffer full */
    assert_int_equal(in(vm, 0x60, 1), 0x55);
    assert_false(in(vm, 0x64, 1) & 1);
    out(vm, 0x64, 1, 0x60); /* write the command byte */
    out(vm, 0x60, 1, 0x47);
    out(vm, 0x64, 1, 0x20);
    assert_int_equal(in(vm, 0x60, 1), 0x47);
    assert_false(atomic_load(&vm->stopping));
    out(vm, 0x64, 1, 0xfe);
    assert_true(atomic_load(&vm->stopping));
    assert_int_equal(vm->stop_reason, VMM_STOP_REBOOT);
    vmm__vm_destroy(vm);
}

static unsigned from_bcd(unsigned v)
{
    return (v >> 4) * 10 + (v & 15);
}

static void test_rtc(void **state)
{
    (void)state;
    vmm_vm_t *vm = new_vm();
    out(vm, 0x70, 1, 0x0d);
    assert_int_equal(in(vm, 0x71, 1), 0x80);
    out(vm, 0x70, 1, 0x0a);
    assert_false(in(vm, 0x71, 1) & 0x80); /* never update-in-progress */
    out(vm, 0x70, 1, 0x08);
    unsigned month = from_bcd(in(vm, 0x71, 1));
    assert_true(month >= 1 && month <= 12);
    out(vm, 0x70, 1, 0x32);
    assert_int_equal(from_bcd(in(vm, 0x71, 1)), 20);
    /* Binary mode through register B. */
    out(vm, 0x70, 1, 0x0b);
    out(vm, 0x71, 1, 0x06);
    out(vm, 0x70, 1, 0x32);
    assert_int_equal(in(vm, 0x71, 1), 20);
    out(vm, 0x70, 1, 0x04);
    assert_true(in(vm, 0x71, 1) < 24);
    /* Memory size above 16 MiB, in 64 KiB units: (64 - 16) MiB. */
    out(vm, 0x70, 1, 0x34);
    unsigned lo = in(vm, 0x71, 1);
    out(vm, 0x70, 1, 0x35);
    assert_int_equal(lo | in(vm, 0x71, 1) << 8, (48u << 20) >> 16);
    vmm__vm_destroy(vm);
}

static void test_uart(void **state)
{
    (void)state;
    vmm_vm_t *vm = new_vm();
    assert_int_equal(in(vm, 0x3fd, 1) & 0x61, 0x60); /* THRE, TEMT, no data */
    out(vm, 0x3fb, 1, 0x80);                         /* DLAB */
    out(vm, 0x3f8, 1, 0x01);
    out(vm, 0x3f9, 1, 0x02);
    assert_int_equal(in(vm, 0x3f8, 1), 0x01);
    assert_int_equal(in(vm, 0x3f9, 1), 0x02);
    out(vm, 0x3fb, 1, 0x03);
    out(vm, 0x3fc, 1, 0x10); /* loopback */
    out(vm, 0x3f8, 1, 'x');
    assert_true(in(vm, 0x3fd, 1) & 1);
    assert_int_equal(in(vm, 0x3f8, 1), 'x');
    assert_false(in(vm, 0x3fd, 1) & 1);
    /* THR-empty interrupt: enabling it raises it; reading IIR clears it. */
    out(vm, 0x3f9, 1, 0x02);
    assert_int_equal(in(vm, 0x3fa, 1) & 0x0f, 0x02);
    assert_int_equal(in(vm, 0x3fa, 1) & 0x0f, 0x01);
    out(vm, 0x3ff, 1, 0x5a);
    assert_int_equal(in(vm, 0x3ff, 1), 0x5a);
    vmm__vm_destroy(vm);
}

static void test_uart_flood(void **state)
{
    (void)state;
    char path[] = "/tmp/vdi-test-uart.XXXXXX", rotated[64];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    snprintf(rotated, sizeof(rotated), "%s.1", path);
    vmm_vm_t *vm = bare_vm_new();
    struct vmm_config cfg = {.serial_log = path, .serial_log_max = 64 << 10};
    assert_int_equal(vmm__uart_setup(vm, &cfg), 0);
    /* 2 MiB of a terminal attack, each byte accepted at once: THRE never drops. */
    static const char evil[] = "\x1b[2J\x1b]0;owned\x07\x1b[31mred\x9b"
                               "6n\n";
    for (unsigned i = 0; i < (2u << 20) / (sizeof(evil) - 1); i++) {
        for (unsigned k = 0; k < sizeof(evil) - 1; k++)
            out(vm, 0x3f8, 1, (uint8_t)evil[k]);
        assert_true(in(vm, 0x3fd, 1) & 0x20);
    }
    vmm__vm_destroy(vm);
    close(fd);

    /* The log and the one rotated file: each under the cap, no escape or bell left in them. */
    char buf[256 << 10];
    for (int f = 0; f < 2; f++) {
        fd = open(f ? rotated : path, O_RDONLY);
        assert_true(fd >= 0);
        ssize_t n = read(fd, buf, sizeof(buf));
        close(fd);
        assert_true(n > 1000);
        assert_true(n <= 64 << 10);
        assert_null(memchr(buf, 0x1b, (size_t)n));
        assert_null(memchr(buf, 0x07, (size_t)n));
        assert_non_null(memmem(buf, (size_t)n, "\\x1b[2J\\x1b]0;owned\\x07", 23));
        /* The rate limit held the rest back, and the log says so at the end. */
        if (f == 0)
            assert_non_null(memmem(buf, (size_t)n, "serial output suppressed: ", 26));
    }
    unlink(path);
    unlink(rotated);
}

static void test_hostile(void **state)
{
    static const uint16_t ports[] = {0x3f8, 0x3f9, 0x3fa, 0x3fb, 0x3fc, 0x3fd, 0x3fe, 0x3ff,
                                     0x60,  0x61,  0x62,  0x63,  0x64,  0x70,  0x71,  0x80,
                                     0x600, 0x601, 0x602, 0x603, 0x604, 0x605, 0x606, 0x607,
                                     0x608, 0x609, 0x60a, 0x60b, 0x92};
    static const uint32_t lens[] = {1, 2, 4};
    (void)state;
    vmm_vm_t *vm = new_vm();
    srand(42);
    for (int i = 0; i < 200000; i++) {
        uint16_t port = ports[rand() % VDI_ARRAY_SIZE(ports)];
        uint32_t len = lens[rand() % 3];
        if (rand() & 1)
            in(vm, port, len);
        else
            out(vm, port, len, (uint32_t)rand());
    }
    /* Still answering sensibly. */
    assert_int_equal(in(vm, 0x3fd, 1) & 0x60, 0x60);
    vmm__vm_destroy(vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acpi_pm),    cmocka_unit_test(test_i8042),
        cmocka_unit_test(test_rtc),        cmocka_unit_test(test_uart),
        cmocka_unit_test(test_uart_flood), cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
