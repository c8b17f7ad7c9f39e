/* server/catq.c: the catalogue worker: one thread that runs vdid's image-catalogue jobs (clones,
 * references, listings) off the loop and out of libuv's thread pool (redis bio.c).
 *
 * Design: a job moves from `pending` (loop → worker) to `finished` (worker → loop), both lists
 * under one mutex. The worker sleeps on a condition variable while `pending` is empty; after each
 * job it calls uv_async_send(), which coalesces, so on_async() drains all of `finished` and runs
 * each @done on the loop. Abandoning a job that has not started moves it straight to `finished`
 * (its @done still runs from on_async(), never from inside srv__catq_abandon()). Closing sets
 * `quit`: the worker empties `pending`, then exits; the last on_async() joins it (at once: it has
 * returned or is about to) and closes the async handle, whose close callback frees the queue.
 *
 * The async handle is unreferenced while no job is outstanding, so an idle queue does not keep
 * vdid's loop alive; outstanding jobs and a close in progress do, as libuv's own work requests do.
 */
#define VDI_LOG_TAG "catq"
#include <pthread.h>
#include <stdlib.h>

#include "common/vdi.h"
#include "server/internal.h"

enum job_state {
    JOB_QUEUED,   /* in q->pending */
    JOB_RUNNING,  /* on the worker */
    JOB_FINISHED, /* in q->finished: ran, or was cancelled before it ran */
};

struct srv_catq_job {
    vdi_list_t link;
    srv_catq_t *q;
    srv_catq_work_fn work;
    srv_catq_done_fn done;
    void *arg;
    enum job_state state; /* under q->lock */
    bool cancelled;       /* under q->lock: abandoned before it ran */
    bool abandoned;       /* loop only */
};

struct srv_catq {
    uv_async_t async;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    vdi_list_t pending;  /* under lock */
    vdi_list_t finished; /* under lock */
    bool quit;           /* under lock: exit once pending is empty */
    bool exited;         /* under lock: the worker has left its loop */
    size_t outstanding;  /* loop only: submitted jobs whose @done has not run */
    bool closing;        /* loop only */
    srv_catq_closed_fn on_closed;
    void *closed_ctx;
};

static void *worker_main(void *arg) /* Thread: the worker */
{
    srv_catq_t *q = arg;
    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (vdi_list_empty(&q->pending) && !q->quit)
            pthread_cond_wait(&q->cond, &q->lock);
        if (vdi_list_empty(&q->pending))
            break;
        srv_catq_job_t *job = vdi_list_entry(vdi_list_pop_head(&q->pending), srv_catq_job_t, link);
        job->state = JOB_RUNNING;
        pthread_mutex_unlock(&q->lock);
        job->work(job->arg);
        pthread_mutex_lock(&q->lock);
        job->state = JOB_FINISHED;
        vdi_list_push_tail(&q->finished, &job->link);
        uv_async_send(&q->async);
    }
    q->exited = true;
    pthread_mutex_unlock(&q->lock);
    /* The loop frees @q only after joining this thread, so this send is safe. */
    uv_async_send(&q->async);
    return NULL;
}

static void on_async_closed(uv_handle_t *h)
{
    srv_catq_t *q = h->data;
    srv_catq_closed_fn cb = q->on_closed;
    void *ctx = q->closed_ctx;
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->lock);
    free(q);
    if (cb)
        cb(ctx);
}

static void on_async(uv_async_t *h)
{
    srv_catq_t *q = h->data;
    vdi_list_t done;
    vdi_list_init(&done);
    pthread_mutex_lock(&q->lock);
    vdi_list_splice_tail(&done, &q->finished);
    bool exited = q->exited;
    pthread_mutex_unlock(&q->lock);
    while (!vdi_list_empty(&done)) {
        srv_catq_job_t *job = vdi_list_entry(vdi_list_pop_head(&done), srv_catq_job_t, link);
        /* job->cancelled was written under the lock we took above, before the splice. */
        int status = job->cancelled ? -ECANCELED : job->abandoned ? -EOWNERDEAD : 0;
        q->outstanding--;
        job->done(job->arg, status);
        free(job);
    }
    if (!q->closing) {
        if (q->outstanding == 0)
            uv_unref((uv_handle_t *)&q->async);
        return;
    }
    /* Closing: the worker leaves only with `pending` empty, after pushing its last job to
     * `finished` (read above in the same critical section), so nothing is outstanding then. */
    if (!exited)
        return;
    VDI_ASSERT(q->outstanding == 0);
    pthread_join(q->thread, NULL);
    uv_close((uv_handle_t *)&q->async, on_async_closed);
}

int srv__catq_create(uv_loop_t *loop, srv_catq_t **out)
{
    srv_catq_t *q = vdi_xcalloc(1, sizeof(*q));
    vdi_list_init(&q->pending);
    vdi_list_init(&q->finished);
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    int rc = uv_async_init(loop, &q->async, on_async);
    if (rc < 0) {
        VDI_LOG_ERR("catalogue worker: cannot set up its wake-up: %s", uv_strerror(rc));
        goto err_free;
    }
    q->async.data = q;
    uv_unref((uv_handle_t *)&q->async);
    rc = -pthread_create(&q->thread, NULL, worker_main, q);
    if (rc < 0) {
        VDI_LOG_ERR("catalogue worker: cannot start its thread: %s", vdi_strerror(rc));
        uv_close((uv_handle_t *)&q->async, on_async_closed); /* frees @q */
        return rc;
    }
    pthread_setname_np(q->thread, "vdid-catq");
    *out = q;
    return 0;
err_free:
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->lock);
    free(q);
    return rc;
}

int srv__catq_submit(srv_catq_t *q, srv_catq_work_fn work, srv_catq_done_fn done, void *arg,
                     srv_catq_job_t **job)
{
    VDI_ASSERT(work && done);
    if (!q || q->closing)
        return -ESHUTDOWN;
    srv_catq_job_t *j = vdi_xcalloc(1, sizeof(*j));
    j->q = q;
    j->work = work;
    j->done = done;
    j->arg = arg;
    j->state = JOB_QUEUED;
    if (q->outstanding++ == 0)
        uv_ref((uv_handle_t *)&q->async);
    pthread_mutex_lock(&q->lock);
    vdi_list_push_tail(&q->pending, &j->link);
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
    if (job)
        *job = j;
    return 0;
}

void srv__catq_abandon(srv_catq_job_t *job)
{
    srv_catq_t *q = job->q;
    bool wake = false;
    job->abandoned = true;
    pthread_mutex_lock(&q->lock);
    if (job->state == JOB_QUEUED) {
        vdi_list_remove(&job->link);
        job->state = JOB_FINISHED;
        job->cancelled = true;
        vdi_list_push_tail(&q->finished, &job->link);
        wake = true;
    }
    pthread_mutex_unlock(&q->lock);
    if (wake)
        uv_async_send(&q->async); /* @done runs from on_async(), not from here */
}

void srv__catq_close(srv_catq_t *q, srv_catq_closed_fn on_closed, void *ctx)
{
    if (!q || q->closing)
        return;
    q->closing = true;
    q->on_closed = on_closed;
    q->closed_ctx = ctx;
    uv_ref((uv_handle_t *)&q->async); /* the loop runs until the worker is gone */
    pthread_mutex_lock(&q->lock);
    q->quit = true;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
}
