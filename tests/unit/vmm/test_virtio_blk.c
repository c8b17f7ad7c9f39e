/* tests/unit/vmm/test_virtio_blk.c: vmm/virtio-blk.c driven like a guest driver over the fake VM:
 * reads, writes, flush, GET_ID, discard and write-zeroes against disk files, requests past the end
 * of the disk, read-only disks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>

#include "tests/unit/vmm/virtio_drv.h"

/* A 1 MiB raw file holding "GOLDEN" at byte 4096 (sector 8), left open in raw_fd. */
static char raw_path[64];
static int raw_fd = -1;

static struct blkctx *raw_setup(bool ro, bool msix)
{
    strcpy(raw_path, "/tmp/vdi-test-blk.XXXXXX");
    raw_fd = mkstemp(raw_path);
    assert_true(raw_fd >= 0);
    assert_int_equal(ftruncate(raw_fd, 1 << 20), 0);
    assert_int_equal(pwrite(raw_fd, "GOLDEN", 6, 4096), 6);
    return blk_attach(raw_path, ro, msix);
}

static void raw_teardown(struct blkctx *c)
{
    blk_detach(c);
    close(raw_fd);
    raw_fd = -1;
    unlink(raw_path);
}

static void test_blk_read_write_flush(void **state)
{
    (void)state;
    struct blkctx *c = raw_setup(false, true);
    /* Capacity in the device config */
    uint64_t cap;
    fake_io(c->vm, VMM_IO_MMIO, c->d.bar4 + 0x2000, &cap, 8, false);
    assert_int_equal(cap, 2048);
    assert_false(c->d.features & (1ull << 5)); /* not read-only */

    assert_int_equal(blk_req(c, 0, 8, 512), 0);
    assert_memory_equal(c->vm->ram + 0x21000, "GOLDEN", 6);
    assert_int_equal(used_len(&c->d, 0, 0), 513);
    uint32_t gsi = 0;
    for (unsigned g = 24; g < FAKE_MAX_ROUTES; g++)
        if (c->vm->routes[g].used && c->vm->routes[g].data == 0x41)
            gsi = g;
    assert_int_not_equal(gsi, 0);
    assert_int_equal(fake_irqfd_count(c->vm, gsi), 1); /* the queue's MSI-X vector fired */

    memcpy(c->vm->ram + 0x21000, "written by the guest", 20);
    assert_int_equal(blk_req(c, 1, 16, 1024), 0);
    char buf[20];
    assert_int_equal(pread(raw_fd, buf, 20, 16 * 512), 20);
    assert_memory_equal(buf, "written by the guest", 20);
    assert_int_equal(blk_req(c, 4, 0, 0), 0); /* flush */
    /* GET_ID answers a serial */
    assert_int_equal(blk_req(c, 8, 0, 20), 0);
    assert_memory_equal(c->vm->ram + 0x21000, "vdi-disk-", 9);
    /* Out of range and unknown requests fail cleanly. */
    assert_int_equal(blk_req(c, 0, 2047, 1024), 1);
    assert_int_equal(blk_req(c, 1, UINT64_MAX / 256, 512), 1);
    assert_int_equal(blk_req(c, 0, 0, 100), 1); /* not a whole sector */
    assert_int_equal(blk_req(c, 77, 0, 0), 2);
    /* Discard is offered (raw files punch holes) and works */
    assert_true(c->d.features & (1ull << 13));
    raw_teardown(c);
}

static void test_blk_read_only(void **state)
{
    (void)state;
    struct blkctx *c = raw_setup(true, false);
    assert_true(c->d.features & (1ull << 5));
    memcpy(c->vm->ram + 0x21000, "EVIL", 4);
    assert_int_equal(blk_req(c, 1, 8, 512), 1); /* IOERR */
    char buf[6];
    assert_int_equal(pread(raw_fd, buf, 6, 4096), 6);
    assert_memory_equal(buf, "GOLDEN", 6);
    /* Discard and write-zeroes are refused too. */
    assert_int_equal(blk_req(c, 11, 0, 0), 1);
    assert_int_equal(blk_req(c, 13, 0, 0), 1);
    /* Reads work, and without MSI-X the interrupt is INTx + ISR. */
    assert_int_equal(blk_req(c, 0, 8, 512), 0);
    unsigned line = cfg_read(c->vm, 1, 0x3c, 1);
    assert_true(c->vm->irq_level[line]);
    assert_int_equal(c8(&c->d, 0x1000) & 1, 1);
    assert_false(c->vm->irq_level[line]);
    assert_int_equal(c8(&c->d, 0x1000), 0);
    raw_teardown(c);
}

static void test_blk_discard_write_zeroes(void **state)
{
    (void)state;
    struct blkctx *c = raw_setup(false, false);
    char buf[512];
    memset(c->vm->ram + 0x21000, 'x', 4096);
    assert_int_equal(blk_req(c, 1, 64, 4096), 0);
    /* Write zeroes over sectors 65..66: the rest of the written range stays. */
    assert_int_equal(blk_segments(c, 13, (uint64_t[]){65}, (uint32_t[]){2}, 1), 0);
    assert_int_equal(pread(raw_fd, buf, 512, 65 * 512), 512);
    for (unsigned i = 0; i < 512; i++)
        assert_int_equal(buf[i], 0);
    assert_int_equal(pread(raw_fd, buf, 512, 64 * 512), 512);
    assert_int_equal(buf[0], 'x');
    assert_int_equal(pread(raw_fd, buf, 512, 67 * 512), 512);
    assert_int_equal(buf[511], 'x');
    /* Discard is accepted (advisory), past the end or with a bad layout it is an error. */
    assert_int_equal(blk_segments(c, 11, (uint64_t[]){0, 128}, (uint32_t[]){128, 8}, 2), 0);
    assert_int_equal(blk_segments(c, 11, (uint64_t[]){2040}, (uint32_t[]){16}, 1), 1);
    assert_int_equal(blk_segments(c, 13, (uint64_t[]){UINT64_MAX / 512}, (uint32_t[]){1}, 1), 1);
    assert_int_equal(blk_req(c, 11, 0, 20), 1);
    raw_teardown(c);
}

/* What each kind of disk offers (virtio 1.2 §5.2.3): SEG_MAX (2), BLK_SIZE (6) and FLUSH (9)
 * always; DISCARD (13) and WRITE_ZEROES (14) when writable; RO (5) when read-only; plus the
 * transport's INDIRECT_DESC (28), VERSION_1 (32) and RING_RESET (40). */
#define BLK_FEATURES_RW                                                                            \
    (1ull << 2 | 1ull << 6 | 1ull << 9 | 1ull << 13 | 1ull << 14 | 1ull << 28 | 1ull << 32 |       \
     1ull << 40)
#define BLK_FEATURES_RO                                                                            \
    (1ull << 2 | 1ull << 5 | 1ull << 6 | 1ull << 9 | 1ull << 28 | 1ull << 32 | 1ull << 40)

static void test_blk_offered_features(void **state)
{
    (void)state;
    struct blkctx *c = raw_setup(false, false);
    assert_int_equal(drv_offered(&c->d), BLK_FEATURES_RW);
    /* The driver may take DISCARD and WRITE_ZEROES, not RO. */
    assert_int_equal(drv_init(&c->d, 1ull << 13 | 1ull << 14, 1, false), 0x0f);
    assert_int_equal(drv_init(&c->d, 1ull << 5, 1, false) & 0x08, 0);
    raw_teardown(c);
    c = raw_setup(true, false);
    assert_int_equal(drv_offered(&c->d), BLK_FEATURES_RO);
    assert_int_equal(drv_init(&c->d, 1ull << 5, 1, false), 0x0f);
    assert_int_equal(drv_init(&c->d, 1ull << 13, 1, false) & 0x08, 0);
    raw_teardown(c);
}

static void test_raw_backend(void **state)
{
    (void)state;
    char path[] = "/tmp/vdi-test-raw.XXXXXX";
    int fd = mkstemp(path);
    struct vmm_blk *b;
    char buf[8];
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 65536), 0);
    assert_int_equal(vmm__blk_open_raw(path, false, &b), 0);
    assert_int_equal(b->size, 65536);
    assert_int_equal(b->ops->pwrite(b, "rawdata!", 8, 4096), 0);
    assert_int_equal(b->ops->flush(b), 0);
    assert_int_equal(pread(fd, buf, 8, 4096), 8);
    assert_memory_equal(buf, "rawdata!", 8);
    assert_int_equal(b->ops->pread(b, buf, 8, 4096), 0);
    assert_memory_equal(buf, "rawdata!", 8);
    assert_int_equal(b->ops->discard(b, 0, 8192), 0);
    assert_int_equal(b->ops->pread(b, buf, 8, 4096), 0);
    assert_int_equal(buf[0], 0);
    b->ops->close(b);
    /* Read-only: opened O_RDONLY, and the ops refuse writes. */
    assert_int_equal(vmm__blk_open_raw(path, true, &b), 0);
    assert_int_equal(b->ops->pwrite(b, "x", 1, 0), -EROFS);
    assert_int_equal(b->ops->discard(b, 0, 4096), -EROFS);
    b->ops->close(b);
    /* Not a file or block device; missing file. */
    assert_int_equal(vmm__blk_open_raw("/dev/null", false, &b), -EINVAL);
    assert_int_equal(vmm__blk_open("/nonexistent/disk.img", false, &b), -ENOENT);
    close(fd);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blk_read_write_flush),
        cmocka_unit_test(test_blk_read_only),
        cmocka_unit_test(test_blk_discard_write_zeroes),
        cmocka_unit_test(test_blk_offered_features),
        cmocka_unit_test(test_raw_backend),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
