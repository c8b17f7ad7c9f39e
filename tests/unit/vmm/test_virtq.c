/* Unit tests for vmm/virtq.c: split virtqueue walking, with well-formed and hostile rings. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "tests/unit/vmm/fake_vm.h"

#define RAM        (1u << 20)
#define QSIZE      16
#define DESC_GPA   0x1000
#define AVAIL_GPA  0x2000
#define USED_GPA   0x3000
#define DATA_GPA   0x10000
#define F_NEXT     1
#define F_WRITE    2
#define F_INDIRECT 4

struct ctx {
    vmm_vm_t *vm;
    struct vmm_virtq q;
    struct vmm_virtq_req req;
};

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));
    c->vm = fake_vm_new(RAM);
    c->q.vm = c->vm;
    c->q.size = QSIZE;
    c->q.desc_gpa = DESC_GPA;
    c->q.avail_gpa = AVAIL_GPA;
    c->q.used_gpa = USED_GPA;
    c->q.indirect = true;
    assert_int_equal(vmm__virtq_start(&c->q), 0);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    fake_vm_free(c->vm);
    free(c);
    return 0;
}

static void set_desc_at(vmm_vm_t *vm, uint64_t table, unsigned i, uint64_t addr, uint32_t len,
                        uint16_t flags, uint16_t next)
{
    uint8_t *d = vm->ram + table + 16 * i;
    memcpy(d, &addr, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
}

static void set_desc(struct ctx *c, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
    set_desc_at(c->vm, DESC_GPA, i, addr, len, flags, next);
}

/* Make @head available as entry number @n of the ring (avail idx becomes n + 1). */
static void offer(struct ctx *c, uint16_t n, uint16_t head)
{
    uint16_t idx = n + 1;
    memcpy(c->vm->ram + AVAIL_GPA + 4 + 2 * (n % QSIZE), &head, 2);
    memcpy(c->vm->ram + AVAIL_GPA + 2, &idx, 2);
}

static uint16_t used_idx(struct ctx *c)
{
    uint16_t v;
    memcpy(&v, c->vm->ram + USED_GPA + 2, 2);
    return v;
}

static void test_empty_ring(void **state)
{
    struct ctx *c = *state;
    assert_int_equal(vmm__virtq_pop(&c->q, &c->req), 0);
}

static void test_good_chain(void **state)
{
    struct ctx *c = *state;
    memcpy(c->vm->ram + DATA_GPA, "hello", 5);
    set_desc(c, 3, DATA_GPA, 5, F_NEXT, 7);
    set_desc(c, 7, DATA_GPA + 0x100, 64, F_WRITE | F_NEXT, 1);
    set_desc(c, 1, DATA_GPA + 0x200, 1, F_WRITE, 0);
    offer(c, 0, 3);
    assert_int_equal(vmm__virtq_pop(&c->q, &c->req), 1);
    assert_int_equal(c->req.head, 3);
    assert_int_equal(c->req.nout, 1);
    assert_int_equal(c->req.nin, 2);
    assert_int_equal(c->req.out_len, 5);
    assert_int_equal(c->req.in_len, 65);
    char buf[8] = {0};
    assert_int_equal(vmm__virtq_req_read(&c->req, 1, buf, 8), 4);
    assert_string_equal(buf, "ello");
    assert_int_equal(vmm__virtq_req_write(&c->req, 62, "abc", 3), 3);
    assert_memory_equal(c->vm->ram + DATA_GPA + 0x100 + 62, "ab", 2);
    assert_int_equal(c->vm->ram[DATA_GPA + 0x200], 'c');
    vmm__virtq_push(&c->q, c->req.head, 65);
    assert_int_equal(used_idx(c), 1);
    uint32_t id, len;
    memcpy(&id, c->vm->ram + USED_GPA + 4, 4);
    memcpy(&len, c->vm->ram + USED_GPA + 8, 4);
    assert_int_equal(id, 3);
    assert_int_equal(len, 65);
    assert_int_equal(vmm__virtq_pop(&c->q, &c->req), 0);
}

static void test_wraparound(void **state)
{
    struct ctx *c = *state;
    set_desc(c, 0, DATA_GPA, 8, F_WRITE, 0);
    for (unsigned n = 0; n < 3 * QSIZE + 5; n++) {
        offer(c, (uint16_t)n, 0);
        assert_int_equal(vmm__virtq_pop(&c->q, &c->req), 1);
        vmm__virtq_push(&c->q, 0, 8);
    }
    assert_int_equal(used_idx(c), 3 * QSIZE + 5);
}

static void test_buffer_outside_ram(void **state)
{
    struct ctx *c = *state;
    set_desc(c, 0, RAM - 4, 8, 0, 0); /* straddles the end of RAM */
    offer(c, 0, 0);
    assert_int_equal(vmm__virtq_pop(&c->q, &c->req), VDI_EGUEST);
}

static void test_buffer_address_wraps(void **state)
{
    struct ctx *c = *state;
    set_desc(c, 0, UINT64_MAX - 2, 16, F_WRITE, 0);
    offer(c, 0, 0);
    assert_int_equal(vmm__virtq_pop(&c->q, &c->req), VDI_EGUEST);
}

static void test_loop(void **state)
{
    struct ctx *c = *state;
    set_desc(c, 0, DATA_GPA, 8, F_NEXT, 1);
    set_desc(c, 1, DATA_GPA, 8, F_NEXT, 2);
    set_desc(c, 2, DATA_GPA, 8, F_NEXT, 0);
    offer(c, 0, 0);
    assert_int_equal(vmm__virtq_pop(&c->q, &c->req), VDI_EGUEST);
}

static void test_self_loop_zero_length(void **state)
{
    struct ctx *c = *state;
    set_desc(c, 5, DATA_GPA, 0, F_NEXT, 5);
    offer(c, 0, 5);
    assert_int_equal(vmm__virtq_pop(&c->q, &c->req), VDI_EGUEST);
}

static void test_next_out_of_table(void **state)
{
    struct ctx *c = *state;
    set_desc(c, 0, DATA_GPA, 8, F_NEXT, QSIZE);
    offer(c, 0, 0);
    assert_int_equal(vmm__virtq_pop(&c->q, &c->req), VDI_EGUEST);
}

static void test_head_out_of_range(void **state)
{
    struct ctx *c = *state;
    offer(c, 0, QSIZE + 3);
    assert_int_equal(vmm__virtq_pop(&c->q, &c->req), VDI_EGUEST);
}

static void test_avail_idx_jump(void **state)
{
    struct ctx *c = *state;
    uint16_t idx = QSIZE + 1;
    memcpy(c->vm->ram + AVAIL_GPA + 2, &idx, 2);
    assert_int_equal(vmm__virtq_pop(&c->q, &c->req), VDI_EGUEST);
}

static void test_readable_after_writable(void **state)
{
    struct ctx *c = *state;
    set_desc(c, 0, DATA_GPA, 8, F_WRITE | F_NEXT, 1);
    set_desc(c, 1, DATA_GPA, 8, 0, 0);
    offer(c, 0, 0);
    assert_int_equal(vmm__virtq_pop(&c->q, &c->req), VDI_EGUEST);
}

static void test_indirect_good(void **state)
{
    struct ctx *c = *state;
    const uint64_t table = 0x8000;
    set_desc_at(c->vm, table, 0, DATA_GPA, 16, F_NEXT, 2);
    set_desc_at(c->vm, table, 2, DATA_GPA + 0x100, 512, F_WRITE | F_NEXT, 1);
    set_desc_at(c->vm, table, 1, DATA_GPA + 0x400, 1, F_WRITE, 0);
    set_desc(c, 4, table, 3 * 16, F_INDIRECT, 0);
    offer(c, 0, 4);
    assert_int_equal(vmm__virtq_pop(&c->q, &c->req), 1);
    assert_int_equal(c->req.head, 4);
    assert_int_equal(c->req.nout, 1);
    assert_int_equal(c->req.nin, 2);
    assert_int_equal(c->req.in_len, 513);
}

static void test_indirect_not_negotiated(void **state)
{
    struct ctx *c = *state;
    c->q.indirect = false;
    set_desc_at(c->vm, 0x8000, 0, DATA_GPA, 16, 0, 0);
    set_desc(c, 0, 0x8000, 16, F_INDIRECT, 0);
    offer(c, 0, 0);
    assert_int_equal(vmm__virtq_pop(&c->q, &c->req), VDI_EGUEST);
}

static void test_indirect_nested(void **state)
{
    struct ctx *c = *state;
    set_desc_at(c->vm, 0x8000, 0, 0x9000, 16, F_INDIRECT, 0);
    set_desc_at(c->vm, 0x9000, 0, DATA_GPA, 16, 0, 0);
    set_desc(c, 0, 0x8000, 16, F_INDIRECT, 0);
    offer(c, 0, 0);
    assert_int_equal(vmm__virtq_pop(&c->q, &c->req), VDI_EGUEST);
}

static void test_indirect_bad_length(void **state)
{
    struct ctx *c = *state;
    set_desc(c, 0, 0x8000, 24, F_INDIRECT, 0); /* not a whole number of descriptors */
    offer(c, 0, 0);
    assert_int_equal(vmm__virtq_pop(&c->q, &c->req), VDI_EGUEST);
}

static void test_indirect_huge(void **state)
{
    struct ctx *c = *state;
    set_desc(c, 0, 0x8000, 0x10000 * 16u, F_INDIRECT, 0);
    offer(c, 0, 0);
    assert_int_equal(vmm__virtq_pop(&c->q, &c->req), VDI_EGUEST);
}

static void test_indirect_table_outside_ram(void **state)
{
    struct ctx *c = *state;
    set_desc(c, 0, RAM - 16, 32, F_INDIRECT, 0);
    offer(c, 0, 0);
    assert_int_equal(vmm__virtq_pop(&c->q, &c->req), VDI_EGUEST);
}

static void test_indirect_with_next(void **state)
{
    struct ctx *c = *state;
    set_desc_at(c->vm, 0x8000, 0, DATA_GPA, 16, 0, 0);
    set_desc(c, 0, 0x8000, 16, F_INDIRECT | F_NEXT, 1);
    set_desc(c, 1, DATA_GPA, 16, 0, 0);
    offer(c, 0, 0);
    assert_int_equal(vmm__virtq_pop(&c->q, &c->req), VDI_EGUEST);
}

static void test_indirect_loop(void **state)
{
    struct ctx *c = *state;
    set_desc_at(c->vm, 0x8000, 0, DATA_GPA, 16, F_NEXT, 1);
    set_desc_at(c->vm, 0x8000, 1, DATA_GPA, 16, F_NEXT, 0);
    set_desc(c, 0, 0x8000, 32, F_INDIRECT, 0);
    offer(c, 0, 0);
    assert_int_equal(vmm__virtq_pop(&c->q, &c->req), VDI_EGUEST);
}

static void test_chain_too_long(void **state)
{
    struct ctx *c = *state;
    /* A full-length indirect table of 256 segments is the limit; chains cannot exceed it. */
    const uint64_t table = 0x20000;
    for (unsigned i = 0; i < VMM_VIRTQ_MAX_SEGS; i++)
        set_desc_at(c->vm, table, i, DATA_GPA, 1, i + 1 < VMM_VIRTQ_MAX_SEGS ? F_NEXT : 0,
                    (uint16_t)(i + 1));
    set_desc(c, 0, table, VMM_VIRTQ_MAX_SEGS * 16, F_INDIRECT, 0);
    offer(c, 0, 0);
    assert_int_equal(vmm__virtq_pop(&c->q, &c->req), 1);
    assert_int_equal(c->req.nout, VMM_VIRTQ_MAX_SEGS);
    set_desc(c, 1, table, (VMM_VIRTQ_MAX_SEGS + 1) * 16, F_INDIRECT, 0);
    offer(c, 1, 1);
    assert_int_equal(vmm__virtq_pop(&c->q, &c->req), VDI_EGUEST);
}

static void test_start_rejects_bad_rings(void **state)
{
    struct ctx *c = *state;
    struct vmm_virtq q = c->q;
    q.size = 3; /* not a power of two */
    assert_int_equal(vmm__virtq_start(&q), VDI_EGUEST);
    q = c->q;
    q.size = 512; /* more than we offer */
    assert_int_equal(vmm__virtq_start(&q), VDI_EGUEST);
    q = c->q;
    q.desc_gpa = DESC_GPA + 8; /* misaligned */
    assert_int_equal(vmm__virtq_start(&q), VDI_EGUEST);
    q = c->q;
    q.used_gpa = RAM - 8; /* outside RAM */
    assert_int_equal(vmm__virtq_start(&q), VDI_EGUEST);
    assert_false(q.started);
    assert_int_equal(vmm__virtq_pop(&q, &c->req), 0);
}

static void test_no_interrupt_flag(void **state)
{
    struct ctx *c = *state;
    assert_true(vmm__virtq_should_notify(&c->q));
    uint16_t flags = 1;
    memcpy(c->vm->ram + AVAIL_GPA, &flags, 2);
    assert_false(vmm__virtq_should_notify(&c->q));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty_ring, setup, teardown),
        cmocka_unit_test_setup_teardown(test_good_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wraparound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buffer_outside_ram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buffer_address_wraps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_self_loop_zero_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_next_out_of_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_avail_idx_jump, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readable_after_writable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_good, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_not_negotiated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_nested, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_bad_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_huge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_table_outside_ram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_with_next, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_too_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_rejects_bad_rings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_interrupt_flag, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
