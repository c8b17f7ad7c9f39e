/* The display side of the PCI devices on real KVM, the way display/ uses them: boots testdesk in
 * this process (vmm__vm_create), reads its desktop through struct dpy_fb_source (EDID mode, the
 * colour bars, KVM's dirty log of the framebuffer slot) and types and points through struct
 * dpy_input_sink (testdesk echoes each event on its serial console and draws the pointer).
 * Needs /dev/kvm and build/testdesk/testdesk.elf: skipped without them (failed without KVM when
 * VDI_REQUIRE_KVM=1), so `make unit` stays runnable anywhere. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "display/dpy.h"
#include "vmm/internal.h"

static char elf[4096], serial[64] = "/tmp/vdi-test-serial.XXXXXX";
static vmm_vm_t *vm;
static const struct dpy_fb_source *fb;
static const struct dpy_input_sink *in;
static void *fb_ctx, *in_ctx;

static unsigned mult(void)
{
    const char *m = getenv("VDI_TEST_TIMEOUT_MULT");
    return m && atoi(m) > 0 ? (unsigned)atoi(m) : 1;
}

/* Wait until the serial log holds @text; returns whether it did within @secs. */
static bool wait_serial(const char *text, unsigned secs)
{
    uint64_t end = vdi_now_ms() + 1000ull * secs * mult();
    static char buf[1 << 16];
    do {
        int fd = open(serial, O_RDONLY);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
        if (fd >= 0)
            close(fd);
        if (n > 0) {
            buf[n] = 0;
            if (strstr(buf, text))
                return true;
        }
        usleep(20000);
    } while (vdi_now_ms() < end);
    fprintf(stderr, "serial log lacks \"%s\":\n%s\n", text, buf);
    return false;
}

static uint32_t pixel(const struct dpy_mode *m, unsigned x, unsigned y)
{
    uint32_t v;
    memcpy(&v, (uint8_t *)m->pixels + (size_t)y * m->stride + 4 * x, 4);
    return v & 0xffffff;
}

static int setup(void **state)
{
    (void)state;
    struct vmm_config cfg = {
        .mem_bytes = 128ull << 20,
        .vcpus = 1,
        .kernel = elf,
        .cmdline = "testdesk.require=fb,kbd,tablet",
        .serial_log = serial,
        .fb_width = 1280,
        .fb_height = 800,
        .input = true,
    };
    char *why = NULL;
    int fd = mkstemp(serial);
    assert_true(fd >= 0);
    close(fd);
    int err = vmm__vm_create(&cfg, &vm, &why);
    if (err < 0)
        fprintf(stderr, "vmm__vm_create: %s: %s\n", vdi_strerror(err), why ? why : "");
    assert_int_equal(err, 0);
    fb = vmm__pci_fb_source(vm, &fb_ctx);
    in = vmm__pci_input_sink(vm, &in_ctx);
    assert_non_null(fb);
    assert_non_null(in);
    assert_int_equal(vmm__vm_start(vm), 0);
    assert_true(wait_serial("TESTDESK READY cpus=1 fb=1280x800", 30));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    vmm__vm_request_stop(vm, VMM_STOP_SHUTDOWN, "test over");
    vmm__vm_join(vm, NULL);
    vmm__vm_destroy(vm);
    unlink(serial);
    return 0;
}

static void test_framebuffer(void **state)
{
    (void)state;
    struct dpy_mode m;
    static const uint32_t bars[8] = {0xffffff, 0xffff00, 0x00ffff, 0x00ff00,
                                     0xff00ff, 0xff0000, 0x0000ff, 0x000000};
    assert_true(fb->get_mode(fb_ctx, &m));
    assert_int_equal(m.width, 1280);
    assert_int_equal(m.height, 800);
    assert_true(m.stride >= 1280 * 4);
    unsigned y = 32 + (800 - 32) / 4;
    for (unsigned i = 0; i < 8; i++)
        assert_int_equal(pixel(&m, i * 160 + 80, y), bars[i]);

    /* KVM's dirty log through the source: the guest drew the desktop, so pages are dirty; the
     * record is cleared by the read. */
    size_t npages = ((size_t)m.stride * m.height + 4095) / 4096;
    uint64_t *bm = calloc((npages + 63) / 64, 8);
    assert_int_equal(fb->get_dirty(fb_ctx, bm, npages), 0);
    size_t dirty = 0;
    for (size_t i = 0; i < (npages + 63) / 64; i++)
        dirty += (size_t)__builtin_popcountll(bm[i]);
    assert_true(dirty > 0);
    free(bm);
}

static void test_input(void **state)
{
    (void)state;
    in->key(in_ctx, 30, true); /* KEY_A */
    in->key(in_ctx, 30, false);
    assert_true(wait_serial("INPUT key code=30 down=1", 10));
    assert_true(wait_serial("INPUT key code=30 down=0", 10));
    in->key(in_ctx, 42, true); /* KEY_LEFTSHIFT */
    in->key(in_ctx, 42, false);
    assert_true(wait_serial("INPUT key code=42 down=1", 10));

    in->pointer(in_ctx, 16384, 8192, 0);
    /* 16384 of 0..32767 -> (1280-1)*16384/32767 = 639; 8192 -> (800-1)*8192/32767 = 199 */
    assert_true(wait_serial("INPUT abs x=639 y=199", 10));
    in->pointer(in_ctx, 16384, 8192, 1);
    in->pointer(in_ctx, 16384, 8192, 0);
    assert_true(wait_serial("INPUT btn code=272 down=1", 10));
    assert_true(wait_serial("INPUT btn code=272 down=0", 10));
    in->pointer(in_ctx, 16384, 8192, 4);
    in->pointer(in_ctx, 16384, 8192, 0);
    assert_true(wait_serial("INPUT btn code=273 down=1", 10)); /* BTN_RIGHT */
    in->wheel(in_ctx, 1, 0);
    assert_true(wait_serial("INPUT wheel v=1 h=0", 10));
    in->wheel(in_ctx, 0, -2);
    assert_true(wait_serial("INPUT wheel v=0 h=-2", 10));

    /* The pointer marker is drawn where the tablet put it. */
    struct dpy_mode m;
    uint64_t end = vdi_now_ms() + 5000ull * mult();
    bool seen = false;
    while (!seen && vdi_now_ms() < end) {
        assert_true(fb->get_mode(fb_ctx, &m));
        seen = pixel(&m, 639 + 4, 199 + 4) == 0xff8000;
        usleep(20000);
    }
    assert_true(seen);
}

int main(void)
{
    const char *src = getenv("VDI_SRC");
    bool need = getenv("VDI_REQUIRE_KVM") && !strcmp(getenv("VDI_REQUIRE_KVM"), "1");
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
        printf(need ? "FAIL: /dev/kvm is not usable and VDI_REQUIRE_KVM=1\n"
                    : "SKIP: /dev/kvm is missing or not accessible\n");
        return need ? 1 : 77;
    }
    snprintf(elf, sizeof(elf), "%s/build/testdesk/testdesk.elf", src ? src : ".");
    if (access(elf, R_OK) != 0) {
        printf("SKIP: %s is not built (make testdesk)\n", elf);
        return 77;
    }
    vdi_log_set_level(VDI_LOG_LEVEL_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framebuffer),
        cmocka_unit_test(test_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
