/* Unit tests for server/catq.c, the catalogue worker: jobs run in order on a thread of their own,
 * @done runs on the loop thread, a slow job does not delay the loop, abandoning a queued or a
 * running job, and a close that waits for the running job and finishes the queue. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/vdi.h"
#include "server/internal.h"

#define MAX_JOBS 16

/* What the jobs of one test saw. work_* are written on the worker, the rest on the loop. */
struct log {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool released; /* lets a gate job finish */
    int work_order[MAX_JOBS], n_work;
    pthread_t work_thread;
    int done_order[MAX_JOBS], done_status[MAX_JOBS], n_done;
    bool done_on_loop;
    bool closed;
    uint64_t released_ms, closed_ms;
};

struct job {
    struct log *log;
    int id;
    bool gate;        /* wait until log->released (at most 5 s) */
    unsigned work_ms; /* sleep this long in @work */
};

static pthread_t loop_thread;

static void log_init(struct log *l)
{
    memset(l, 0, sizeof(*l));
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, NULL);
    l->done_on_loop = true;
}

static void log_fini(struct log *l)
{
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
}

static void job_work(void *arg)
{
    struct job *j = arg;
    struct log *l = j->log;
    pthread_mutex_lock(&l->lock);
    l->work_order[l->n_work++] = j->id;
    l->work_thread = pthread_self();
    if (j->gate) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 5;
        while (!l->released && pthread_cond_timedwait(&l->cond, &l->lock, &ts) == 0)
            ;
    }
    pthread_mutex_unlock(&l->lock);
    if (j->work_ms)
        usleep(j->work_ms * 1000);
}

static void job_done(void *arg, int status)
{
    struct job *j = arg;
    struct log *l = j->log;
    if (!pthread_equal(pthread_self(), loop_thread))
        l->done_on_loop = false;
    l->done_order[l->n_done] = j->id;
    l->done_status[l->n_done++] = status;
}

static void on_closed(void *ctx)
{
    struct log *l = ctx;
    l->closed = true;
    l->closed_ms = vdi_now_ms();
}

static void release(struct log *l)
{
    pthread_mutex_lock(&l->lock);
    l->released = true;
    l->released_ms = vdi_now_ms();
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

static int setup(void **state)
{
    uv_loop_t *loop = vdi_xcalloc(1, sizeof(*loop));
    loop_thread = pthread_self();
    if (uv_loop_init(loop) < 0)
        return -1;
    *state = loop;
    return 0;
}

static int teardown(void **state)
{
    uv_loop_t *loop = *state;
    int rc = uv_loop_close(loop); /* UV_EBUSY if a test left a handle open */
    free(loop);
    return rc;
}

/* Jobs run in submission order, on one thread that is not the loop's; every @done runs on the
 * loop, in the same order, with status 0; an idle queue lets uv_run() return. */
static void test_order_and_threads(void **state)
{
    uv_loop_t *loop = *state;
    srv_catq_t *q;
    struct log l;
    struct job jobs[8];
    log_init(&l);
    assert_int_equal(srv__catq_create(loop, &q), 0);
    for (int i = 0; i < 8; i++) {
        jobs[i] = (struct job){.log = &l, .id = i};
        assert_int_equal(srv__catq_submit(q, job_work, job_done, &jobs[i], NULL), 0);
    }
    uv_run(loop, UV_RUN_DEFAULT); /* returns once every @done ran */
    assert_int_equal(l.n_work, 8);
    assert_int_equal(l.n_done, 8);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(l.work_order[i], i);
        assert_int_equal(l.done_order[i], i);
        assert_int_equal(l.done_status[i], 0);
    }
    assert_true(l.done_on_loop);
    assert_false(pthread_equal(l.work_thread, loop_thread));
    srv__catq_close(q, on_closed, &l);
    assert_false(l.closed); /* asynchronous */
    uv_run(loop, UV_RUN_DEFAULT);
    assert_true(l.closed);
    log_fini(&l);
}

struct ticker {
    uv_timer_t timer;
    uint64_t last, max_gap;
    unsigned ticks;
};

static void on_tick(uv_timer_t *t)
{
    struct ticker *tk = vdi_container_of(t, struct ticker, timer);
    uint64_t now = vdi_now_ms();
    if (tk->last && now - tk->last > tk->max_gap)
        tk->max_gap = now - tk->last;
    tk->last = now;
    tk->ticks++;
}

/* A job that takes 400 ms: the loop keeps ticking every 10 ms meanwhile. */
static void test_slow_job_does_not_delay_loop(void **state)
{
    uv_loop_t *loop = *state;
    srv_catq_t *q;
    struct log l;
    struct ticker tk = {0};
    log_init(&l);
    assert_int_equal(srv__catq_create(loop, &q), 0);
    struct job slow = {.log = &l, .id = 1, .work_ms = 400};
    assert_int_equal(srv__catq_submit(q, job_work, job_done, &slow, NULL), 0);
    uv_timer_init(loop, &tk.timer);
    uv_timer_start(&tk.timer, on_tick, 10, 10);
    uv_unref((uv_handle_t *)&tk.timer); /* the loop runs as long as the job is outstanding */
    tk.last = vdi_now_ms();
    uint64_t t0 = vdi_now_ms();
    uv_run(loop, UV_RUN_DEFAULT);
    uint64_t took = vdi_now_ms() - t0;
    uv_close((uv_handle_t *)&tk.timer, NULL);
    srv__catq_close(q, on_closed, &l);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(l.n_done, 1);
    assert_true(took >= 400);
    assert_true(tk.ticks >= 15);
    assert_true(tk.max_gap < 150);
    assert_true(l.closed);
    log_fini(&l);
}

/* Abandoning: a queued job never runs (-ECANCELED), a running one finishes (-EOWNERDEAD); the
 * queue carries on with the rest. */
static void test_abandon(void **state)
{
    uv_loop_t *loop = *state;
    srv_catq_t *q;
    struct log l;
    srv_catq_job_t *h[3];
    log_init(&l);
    assert_int_equal(srv__catq_create(loop, &q), 0);
    struct job gate = {.log = &l, .id = 0, .gate = true};
    struct job a = {.log = &l, .id = 1}, b = {.log = &l, .id = 2};
    assert_int_equal(srv__catq_submit(q, job_work, job_done, &gate, &h[0]), 0);
    assert_int_equal(srv__catq_submit(q, job_work, job_done, &a, &h[1]), 0);
    assert_int_equal(srv__catq_submit(q, job_work, job_done, &b, &h[2]), 0);
    /* Wait for the gate job to be running. */
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&l.lock);
        int n = l.n_work;
        pthread_mutex_unlock(&l.lock);
        if (n)
            break;
        usleep(10000);
    }
    srv__catq_abandon(h[1]);
    srv__catq_abandon(h[1]); /* again: no change */
    srv__catq_abandon(h[0]);
    assert_int_equal(l.n_done, 0); /* never from inside abandon */
    release(&l);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(l.n_work, 2);
    assert_int_equal(l.work_order[0], 0);
    assert_int_equal(l.work_order[1], 2);
    assert_int_equal(l.n_done, 3);
    for (int i = 0; i < 3; i++) {
        int want = l.done_order[i] == 0 ? -EOWNERDEAD : l.done_order[i] == 1 ? -ECANCELED : 0;
        assert_int_equal(l.done_status[i], want);
    }
    srv__catq_close(q, on_closed, &l);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_true(l.closed);
    log_fini(&l);
}

static void on_release_timer(uv_timer_t *t)
{
    release(t->data);
    uv_close((uv_handle_t *)t, NULL);
}

/* Closing with a job running and three queued (one of them abandoned): new jobs are refused, the
 * close waits for the running job (without blocking the loop), the queued ones still run in
 * order, the abandoned one is cancelled, and only then does the queue report closed. */
static void test_close_with_queued_jobs(void **state)
{
    uv_loop_t *loop = *state;
    srv_catq_t *q;
    struct log l;
    srv_catq_job_t *h;
    uv_timer_t t;
    log_init(&l);
    assert_int_equal(srv__catq_create(loop, &q), 0);
    struct job jobs[4] = {
        {.log = &l, .id = 0, .gate = true},
        {.log = &l, .id = 1},
        {.log = &l, .id = 2},
        {.log = &l, .id = 3},
    };
    for (int i = 0; i < 4; i++)
        assert_int_equal(srv__catq_submit(q, job_work, job_done, &jobs[i], i == 2 ? &h : NULL), 0);
    srv__catq_abandon(h);
    uint64_t t0 = vdi_now_ms();
    srv__catq_close(q, on_closed, &l);
    srv__catq_close(q, on_closed, &l); /* again: nothing */
    assert_true(vdi_now_ms() - t0 < 100);
    struct job late = {.log = &l, .id = 9};
    assert_int_equal(srv__catq_submit(q, job_work, job_done, &late, NULL), -ESHUTDOWN);
    uv_timer_init(loop, &t);
    t.data = &l;
    uv_timer_start(&t, on_release_timer, 200, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_true(l.closed);
    assert_true(l.closed_ms >= l.released_ms);
    assert_int_equal(l.n_work, 3);
    assert_int_equal(l.work_order[0], 0);
    assert_int_equal(l.work_order[1], 1);
    assert_int_equal(l.work_order[2], 3);
    assert_int_equal(l.n_done, 4);
    int seen_cancel = 0;
    for (int i = 0; i < 4; i++) {
        if (l.done_order[i] == 2) {
            assert_int_equal(l.done_status[i], -ECANCELED);
            seen_cancel++;
        } else {
            assert_int_equal(l.done_status[i], 0);
        }
    }
    assert_int_equal(seen_cancel, 1);
    assert_true(l.done_on_loop);
    log_fini(&l);
}

/* Closing an idle queue; a NULL queue refuses jobs and closes as nothing. */
static void test_close_idle(void **state)
{
    uv_loop_t *loop = *state;
    srv_catq_t *q;
    struct log l;
    log_init(&l);
    srv__catq_close(NULL, on_closed, &l);
    assert_false(l.closed);
    struct job j = {.log = &l};
    assert_int_equal(srv__catq_submit(NULL, job_work, job_done, &j, NULL), -ESHUTDOWN);
    assert_int_equal(srv__catq_create(loop, &q), 0);
    assert_int_equal(uv_run(loop, UV_RUN_NOWAIT), 0); /* idle: nothing keeps the loop alive */
    srv__catq_close(q, on_closed, &l);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_true(l.closed);
    log_fini(&l);
}

int main(void)
{
    vdi_log_set_level(VDI_LOG_LEVEL_ERR - 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_and_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_job_does_not_delay_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abandon, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_queued_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_idle, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
