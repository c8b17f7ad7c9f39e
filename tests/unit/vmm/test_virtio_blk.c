/* tests/unit/vmm/test_virtio_blk.c: vmm/virtio-blk.c driven like a guest driver over the fake VM,
 * on disks opened with golden-images/: reads, writes, flush, GET_ID, discard and write-zeroes on a
 * raw file and on qcow2 images the library made (a plain one and an overlay on a raw backing
 * file; afterwards `qemu-img check` must find them clean and `qemu-img compare` must find what
 * the guest wrote), requests past the end of the disk, read-only disks (raw and qcow2, left
 * byte-for-byte untouched), the library's locks, and I/O errors (pread, pwrite and fdatasync
 * are wrapped at link time, see vmm/module.mk), which must reach the guest as IOERR and leave
 * the device working. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "tests/unit/vmm/virtio_drv.h"

/* ---- I/O that fails on demand ------------------------------------------------------------- */
ssize_t __real_pread(int fd, void *buf, size_t n, off_t off);
ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
int __real_fdatasync(int fd);
ssize_t __wrap_pread(int fd, void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);
int __wrap_fdatasync(int fd);

static bool fail_io; /* while set, every pread, pwrite and fdatasync fails with EIO */

ssize_t __wrap_pread(int fd, void *buf, size_t n, off_t off)
{
    if (fail_io) {
        errno = EIO;
        return -1;
    }
    return __real_pread(fd, buf, n, off);
}

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    if (fail_io) {
        errno = EIO;
        return -1;
    }
    return __real_pwrite(fd, buf, n, off);
}

int __wrap_fdatasync(int fd)
{
    if (fail_io) {
        errno = EIO;
        return -1;
    }
    return __real_fdatasync(fd);
}

/* ---- Disk files --------------------------------------------------------------------------- */
#define DISK_SIZE (4u << 20) /* qcow2 images: 8192 sectors, 64 clusters of 64 KiB */

static char dir[64], raw_path[96], qcow_path[96], base_path[96], expect_path[96];
static int raw_fd = -1;

static int group_setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/vdi-test-blk.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(raw_path, sizeof(raw_path), "%s/disk.raw", dir);
    snprintf(qcow_path, sizeof(qcow_path), "%s/disk.qcow2", dir);
    snprintf(base_path, sizeof(base_path), "%s/base.raw", dir);
    snprintf(expect_path, sizeof(expect_path), "%s/expect.raw", dir);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return rmdir(dir);
}

/* Each test leaves its files behind; remove them. */
static int cleanup(void **state)
{
    (void)state;
    if (raw_fd >= 0)
        close(raw_fd);
    raw_fd = -1;
    fail_io = false;
    unlink(raw_path);
    unlink(qcow_path);
    unlink(base_path);
    unlink(expect_path);
    return 0;
}

/* A raw file of @size bytes holding "GOLDEN" at byte 4096 (sector 8). */
static void make_golden_raw(const char *path, uint64_t size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    assert_int_equal(__real_pwrite(fd, "GOLDEN", 6, 4096), 6);
    close(fd);
}

/* The 1 MiB golden raw file at raw_path, left open in raw_fd, on a new VM. */
static struct blkctx *raw_setup(bool ro, bool msix)
{
    make_golden_raw(raw_path, 1 << 20);
    raw_fd = open(raw_path, O_RDONLY | O_CLOEXEC);
    assert_true(raw_fd >= 0);
    return blk_attach(raw_path, ro, msix);
}

/* A new qcow2 image at @path (golden-images/, 64 KiB clusters) over @backing or empty. */
static void make_qcow2(const char *path, const char *backing)
{
    struct img_create_opts o = {
        .format = "qcow2", .size = backing ? 0 : DISK_SIZE, .backing = backing};
    assert_int_equal(img_create(path, &o), 0);
}

/* The whole file at @path, malloc'd; *len gets its size. */
static uint8_t *slurp(const char *path, size_t *len)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    assert_int_equal(__real_pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return buf;
}

/* Whether qemu-img can cross-check our images here. Missing, it is a note (the device checks
 * still ran), or a failure where CI promises every test tool (VDI_REQUIRE_DEPS=1 or
 * VDI_REQUIRE_KVM=1). */
static bool have_qemu_img(void)
{
    if (system("command -v qemu-img >/dev/null 2>&1") == 0)
        return true;
    const char *deps = getenv("VDI_REQUIRE_DEPS"), *kvm = getenv("VDI_REQUIRE_KVM");
    if ((deps && strcmp(deps, "1") == 0) || (kvm && strcmp(kvm, "1") == 0))
        fail_msg("qemu-img is not installed (apt install qemu-utils) and CI requires it");
    print_message("qemu-img is not installed: images not cross-checked\n");
    return false;
}

/* `qemu-img check` on the qcow2 image @path: 0 when clean. */
static int qemu_img_check(const char *path)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "qemu-img check -q -f qcow2 '%s'", path);
    return system(cmd);
}

/* `qemu-img compare` of the raw file @raw with the qcow2 image @qcow2: 0 when they show the
 * same bytes. */
static int qemu_img_compare(const char *raw, const char *qcow2)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "qemu-img compare -q -f raw -F qcow2 '%s' '%s'", raw, qcow2);
    return system(cmd);
}

/* Guest data buffer (0x21000) filled with @len bytes of @c. */
static void fill(struct blkctx *c, int ch, size_t len)
{
    memset(c->vm->ram + 0x21000, ch, len);
}

/* What the guest reads back at @sector: @len bytes of @ch? */
static bool reads_as(struct blkctx *c, uint64_t sector, int ch, uint32_t len)
{
    memset(c->vm->ram + 0x21000, ~ch, len);
    if (blk_req(c, BLK_T_IN, sector, len) != BLK_S_OK)
        return false;
    for (uint32_t i = 0; i < len; i++)
        if (c->vm->ram[0x21000 + i] != (uint8_t)ch)
            return false;
    return true;
}

/* ---- Raw files ---------------------------------------------------------------------------- */
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
    assert_int_equal(__real_pread(raw_fd, buf, 20, 16 * 512), 20);
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
    blk_detach(c);
}

static void test_blk_read_only(void **state)
{
    (void)state;
    struct blkctx *c = raw_setup(true, false);
    assert_true(c->d.features & (1ull << 5));
    memcpy(c->vm->ram + 0x21000, "EVIL", 4);
    assert_int_equal(blk_req(c, 1, 8, 512), 1); /* IOERR */
    char buf[6];
    assert_int_equal(__real_pread(raw_fd, buf, 6, 4096), 6);
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
    blk_detach(c);
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
    assert_int_equal(__real_pread(raw_fd, buf, 512, 65 * 512), 512);
    for (unsigned i = 0; i < 512; i++)
        assert_int_equal(buf[i], 0);
    assert_int_equal(__real_pread(raw_fd, buf, 512, 64 * 512), 512);
    assert_int_equal(buf[0], 'x');
    assert_int_equal(__real_pread(raw_fd, buf, 512, 67 * 512), 512);
    assert_int_equal(buf[511], 'x');
    /* Discard is accepted (advisory), past the end or with a bad layout it is an error. */
    assert_int_equal(blk_segments(c, 11, (uint64_t[]){0, 128}, (uint32_t[]){128, 8}, 2), 0);
    assert_int_equal(blk_segments(c, 11, (uint64_t[]){2040}, (uint32_t[]){16}, 1), 1);
    assert_int_equal(blk_segments(c, 13, (uint64_t[]){UINT64_MAX / 512}, (uint32_t[]){1}, 1), 1);
    assert_int_equal(blk_req(c, 11, 0, 20), 1);
    blk_detach(c);
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
    blk_detach(c);
    c = raw_setup(true, false);
    assert_int_equal(drv_offered(&c->d), BLK_FEATURES_RO);
    assert_int_equal(drv_init(&c->d, 1ull << 5, 1, false), 0x0f);
    assert_int_equal(drv_init(&c->d, 1ull << 13, 1, false) & 0x08, 0);
    blk_detach(c);
}

static void test_blk_past_the_end(void **state)
{
    (void)state;
    struct blkctx *c = raw_setup(false, true);
    char buf[6];
    /* The last sector is the disk's; one past it, or a request straddling the end, is not. */
    fill(c, 'e', 1024);
    assert_int_equal(blk_req(c, BLK_T_OUT, 2047, 512), BLK_S_OK);
    assert_int_equal(blk_req(c, BLK_T_IN, 2047, 512), BLK_S_OK);
    assert_int_equal(blk_req(c, BLK_T_IN, 2048, 512), BLK_S_IOERR);
    assert_int_equal(blk_req(c, BLK_T_OUT, 2048, 512), BLK_S_IOERR);
    fill(c, 'z', 1024);
    assert_int_equal(blk_req(c, BLK_T_OUT, 2047, 1024), BLK_S_IOERR);
    assert_int_equal(blk_segments(c, BLK_T_WRITE_ZEROES, (uint64_t[]){2047}, (uint32_t[]){2}, 1),
                     BLK_S_IOERR);
    assert_int_equal(blk_req(c, BLK_T_OUT, UINT64_MAX / 512, 512), BLK_S_IOERR);
    /* Nothing was written for them: the file did not grow and its last sector is what the
     * one good write put there. */
    struct stat st;
    assert_int_equal(fstat(raw_fd, &st), 0);
    assert_int_equal(st.st_size, 1 << 20);
    assert_int_equal(__real_pread(raw_fd, buf, 1, 2047 * 512), 1);
    assert_int_equal(buf[0], 'e');
    assert_int_equal(c8(&c->d, 0x14), 0x0f); /* the device is fine */
    blk_detach(c);
}

/* ---- qcow2 -------------------------------------------------------------------------------- */
static void test_blk_qcow2(void **state)
{
    (void)state;
    make_qcow2(qcow_path, NULL);
    struct blkctx *c = blk_attach(qcow_path, false, true);
    uint64_t cap;
    fake_io(c->vm, VMM_IO_MMIO, c->d.bar4 + 0x2000, &cap, 8, false);
    assert_int_equal(cap, DISK_SIZE / 512);
    assert_int_equal(drv_offered(&c->d), BLK_FEATURES_RW);
    /* Unallocated clusters read as zeroes. */
    assert_true(reads_as(c, 100, 0, 4096));
    /* Writes: a cluster's start, an odd sector, a range across a cluster boundary. */
    fill(c, 'A', 4096);
    assert_int_equal(blk_req(c, BLK_T_OUT, 0, 4096), BLK_S_OK);
    fill(c, 'B', 1024);
    assert_int_equal(blk_req(c, BLK_T_OUT, 1001, 1024), BLK_S_OK);
    fill(c, 'C', 32768);
    assert_int_equal(blk_req(c, BLK_T_OUT, 2048 - 32, 32768), BLK_S_OK);
    /* A whole cluster (sectors 4096..4223) written, then discarded: zeroes again. */
    fill(c, 'D', 32768);
    assert_int_equal(blk_req(c, BLK_T_OUT, 4096, 32768), BLK_S_OK);
    assert_int_equal(blk_req(c, BLK_T_OUT, 4096 + 64, 32768), BLK_S_OK);
    assert_true(reads_as(c, 4096 + 64, 'D', 32768));
    assert_int_equal(blk_segments(c, BLK_T_DISCARD, (uint64_t[]){4096}, (uint32_t[]){128}, 1),
                     BLK_S_OK);
    assert_true(reads_as(c, 4096, 0, 32768));
    /* Write zeroes over sector 1002 (of the two B sectors). */
    assert_int_equal(blk_segments(c, BLK_T_WRITE_ZEROES, (uint64_t[]){1002}, (uint32_t[]){1}, 1),
                     BLK_S_OK);
    assert_int_equal(blk_req(c, BLK_T_FLUSH, 0, 0), BLK_S_OK);
    assert_true(reads_as(c, 0, 'A', 4096));
    assert_true(reads_as(c, 1001, 'B', 512));
    assert_true(reads_as(c, 1002, 0, 512));
    assert_true(reads_as(c, 2048 - 32, 'C', 32768));
    assert_int_equal(blk_req(c, BLK_T_IN, DISK_SIZE / 512, 512), BLK_S_IOERR);
    blk_detach(c);

    /* The same bytes as a raw file, for qemu-img to compare. */
    int fd = open(expect_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, DISK_SIZE), 0);
    uint8_t *b = malloc(32768);
    memset(b, 'A', 4096);
    assert_int_equal(__real_pwrite(fd, b, 4096, 0), 4096);
    memset(b, 'B', 512);
    assert_int_equal(__real_pwrite(fd, b, 512, 1001 * 512), 512);
    memset(b, 'C', 32768);
    assert_int_equal(__real_pwrite(fd, b, 32768, (2048 - 32) * 512), 32768);
    free(b);
    close(fd);
    if (have_qemu_img()) {
        assert_int_equal(qemu_img_check(qcow_path), 0);
        assert_int_equal(qemu_img_compare(expect_path, qcow_path), 0);
    }

    /* Opened again (the lock went with the device), the data is there. */
    c = blk_attach(qcow_path, false, false);
    assert_true(reads_as(c, 1001, 'B', 512));
    blk_detach(c);
}

static void test_blk_qcow2_overlay(void **state)
{
    (void)state;
    make_golden_raw(base_path, DISK_SIZE);
    make_qcow2(qcow_path, base_path);
    struct blkctx *c = blk_attach(qcow_path, false, true);
    img_disk_t *other;
    /* The backing file is read-locked while the overlay is in use: nobody may write it. */
    assert_int_equal(img_open(base_path, 0, &other), -EAGAIN);
    assert_int_equal(img_open(qcow_path, IMG_OPEN_RDONLY, &other), -EAGAIN);
    /* Reads fall through to the backing file; writes land in the overlay only. */
    assert_int_equal(blk_req(c, BLK_T_IN, 8, 512), BLK_S_OK);
    assert_memory_equal(c->vm->ram + 0x21000, "GOLDEN", 6);
    memcpy(c->vm->ram + 0x21000, "OVERLAY", 7);
    assert_int_equal(blk_req(c, BLK_T_OUT, 9, 512), BLK_S_OK);
    assert_int_equal(blk_req(c, BLK_T_FLUSH, 0, 0), BLK_S_OK);
    assert_int_equal(blk_req(c, BLK_T_IN, 8, 1024), BLK_S_OK);
    assert_memory_equal(c->vm->ram + 0x21000, "GOLDEN", 6);
    assert_memory_equal(c->vm->ram + 0x21000 + 512, "OVERLAY", 7);
    blk_detach(c);

    char buf[8];
    int fd = open(base_path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(__real_pread(fd, buf, 7, 9 * 512), 7);
    assert_memory_not_equal(buf, "OVERLAY", 7); /* the golden file is untouched */
    close(fd);
    make_golden_raw(expect_path, DISK_SIZE);
    fd = open(expect_path, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    uint8_t sector[512] = "OVERLAY";
    assert_int_equal(__real_pwrite(fd, sector, 512, 9 * 512), 512);
    close(fd);
    if (have_qemu_img()) {
        assert_int_equal(qemu_img_check(qcow_path), 0);
        assert_int_equal(qemu_img_compare(expect_path, qcow_path), 0);
    }
}

/* ---- Read-only disks ---------------------------------------------------------------------- */
static void test_blk_read_only_qcow2(void **state)
{
    (void)state;
    img_disk_t *d;
    make_qcow2(qcow_path, NULL);
    assert_int_equal(img_open(qcow_path, 0, &d), 0);
    assert_int_equal(img_pwrite(d, "PUBLISHED", 9, 8 * 512), 0);
    img_close(d);
    size_t len_before, len_after;
    uint8_t *before = slurp(qcow_path, &len_before);

    struct blkctx *c = blk_attach(qcow_path, true, false);
    assert_int_equal(drv_offered(&c->d), BLK_FEATURES_RO);
    /* Readers share the image; a writer is locked out. */
    assert_int_equal(img_open(qcow_path, IMG_OPEN_RDONLY, &d), 0);
    img_close(d);
    assert_int_equal(img_open(qcow_path, 0, &d), -EAGAIN);
    assert_int_equal(blk_req(c, BLK_T_IN, 8, 512), BLK_S_OK);
    assert_memory_equal(c->vm->ram + 0x21000, "PUBLISHED", 9);
    fill(c, 'X', 4096);
    assert_int_equal(blk_req(c, BLK_T_OUT, 8, 4096), BLK_S_IOERR);
    assert_int_equal(blk_req(c, BLK_T_OUT, 200, 512), BLK_S_IOERR);
    assert_int_equal(blk_segments(c, BLK_T_DISCARD, (uint64_t[]){0}, (uint32_t[]){128}, 1),
                     BLK_S_IOERR);
    assert_int_equal(blk_segments(c, BLK_T_WRITE_ZEROES, (uint64_t[]){8}, (uint32_t[]){1}, 1),
                     BLK_S_IOERR);
    assert_int_equal(blk_req(c, BLK_T_FLUSH, 0, 0), BLK_S_OK); /* nothing to flush */
    assert_int_equal(blk_req(c, BLK_T_IN, 8, 512), BLK_S_OK);
    assert_memory_equal(c->vm->ram + 0x21000, "PUBLISHED", 9);
    blk_detach(c);

    uint8_t *after = slurp(qcow_path, &len_after);
    assert_int_equal(len_after, len_before);
    assert_memory_equal(after, before, len_before); /* not one byte changed, header included */
    free(before);
    free(after);
    if (have_qemu_img())
        assert_int_equal(qemu_img_check(qcow_path), 0);
}

/* ---- I/O errors --------------------------------------------------------------------------- */
static void test_blk_io_errors(void **state)
{
    (void)state;
    struct blkctx *c = raw_setup(false, true);
    fail_io = true;
    fill(c, 'w', 512);
    assert_int_equal(blk_req(c, BLK_T_IN, 8, 512), BLK_S_IOERR);
    assert_int_equal(blk_req(c, BLK_T_OUT, 8, 512), BLK_S_IOERR);
    assert_int_equal(blk_req(c, BLK_T_FLUSH, 0, 0), BLK_S_IOERR);
    assert_int_equal(blk_segments(c, BLK_T_WRITE_ZEROES, (uint64_t[]){8}, (uint32_t[]){1}, 1),
                     BLK_S_IOERR);
    fail_io = false;
    /* The errors were the requests' alone: the device still works, the VM was not stopped. */
    assert_int_equal(c8(&c->d, 0x14), 0x0f);
    assert_int_equal(c->vm->stops, 0);
    assert_int_equal(blk_req(c, BLK_T_IN, 8, 512), BLK_S_OK);
    assert_memory_equal(c->vm->ram + 0x21000, "GOLDEN", 6);
    assert_int_equal(blk_req(c, BLK_T_FLUSH, 0, 0), BLK_S_OK);
    blk_detach(c);

    /* qcow2: a data cluster that cannot be read. */
    make_qcow2(qcow_path, NULL);
    c = blk_attach(qcow_path, false, true);
    fill(c, 'q', 4096);
    assert_int_equal(blk_req(c, BLK_T_OUT, 128, 4096), BLK_S_OK);
    fail_io = true;
    assert_int_equal(blk_req(c, BLK_T_IN, 128, 4096), BLK_S_IOERR);
    fail_io = false;
    assert_int_equal(c8(&c->d, 0x14), 0x0f);
    assert_int_equal(c->vm->stops, 0);
    assert_true(reads_as(c, 128, 'q', 4096));
    blk_detach(c);
}

/* ---- The machine's disks (vmm__pci_setup) ------------------------------------------------- */
static void test_blk_disk_config(void **state)
{
    (void)state;
    make_golden_raw(raw_path, 1 << 20);
    make_qcow2(qcow_path, NULL);
    /* A raw and a read-only qcow2 disk, in command-line order. */
    struct vmm_config cfg = {.ndisks = 2};
    cfg.disks[0] = (struct vmm_disk_config){.path = raw_path};
    cfg.disks[1] = (struct vmm_disk_config){.path = qcow_path, .read_only = true};
    vmm_vm_t *vm = fake_vm_new(RAM);
    assert_int_equal(vmm__pci_setup(vm, &cfg), 0);
    struct drv d1, d2;
    drv_attach(&d1, vm, 1);
    drv_attach(&d2, vm, 2);
    assert_int_equal(drv_offered(&d1), BLK_FEATURES_RW);
    assert_int_equal(drv_offered(&d2), BLK_FEATURES_RO);
    vmm__pci_teardown(vm);
    fake_vm_free(vm);
    /* A disk named twice is locked against itself; a missing one is bad input too. */
    cfg.disks[1] = cfg.disks[0];
    vm = fake_vm_new(RAM);
    assert_int_equal(vmm__pci_setup(vm, &cfg), VDI_ECONFIG);
    assert_int_equal(vm->nfds, 0);
    fake_vm_free(vm);
    cfg.disks[1].path = "/nonexistent/disk.img";
    vm = fake_vm_new(RAM);
    assert_int_equal(vmm__pci_setup(vm, &cfg), VDI_ECONFIG);
    fake_vm_free(vm);
    /* --backing-root: an overlay whose backing file lies outside the root is refused. */
    unlink(qcow_path);
    make_qcow2(qcow_path, raw_path);
    cfg = (struct vmm_config){.ndisks = 1, .backing_root = "/var/empty-vdi-root"};
    cfg.disks[0] = (struct vmm_disk_config){.path = qcow_path, .read_only = true};
    vm = fake_vm_new(RAM);
    assert_int_equal(vmm__pci_setup(vm, &cfg), VDI_ECONFIG);
    fake_vm_free(vm);
    cfg.backing_root = dir; /* the raw backing file is in it */
    vm = fake_vm_new(RAM);
    assert_int_equal(vmm__pci_setup(vm, &cfg), 0);
    vmm__pci_teardown(vm);
    fake_vm_free(vm);
}

int main(void)
{
    vdi_log_set_level(VDI_LOG_LEVEL_ERR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_blk_read_write_flush, cleanup),
        cmocka_unit_test_teardown(test_blk_read_only, cleanup),
        cmocka_unit_test_teardown(test_blk_discard_write_zeroes, cleanup),
        cmocka_unit_test_teardown(test_blk_offered_features, cleanup),
        cmocka_unit_test_teardown(test_blk_past_the_end, cleanup),
        cmocka_unit_test_teardown(test_blk_qcow2, cleanup),
        cmocka_unit_test_teardown(test_blk_qcow2_overlay, cleanup),
        cmocka_unit_test_teardown(test_blk_read_only_qcow2, cleanup),
        cmocka_unit_test_teardown(test_blk_io_errors, cleanup),
        cmocka_unit_test_teardown(test_blk_disk_config, cleanup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
