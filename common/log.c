/* common/log.c: the logger. One line per event, written with a single write(2) so that lines from
 * several threads never interleave. Under systemd (JOURNAL_STREAM names our stderr) each line
 * starts with the syslog priority "<N>" and journald adds the time; elsewhere a line starts with
 * the UTC time and a level letter. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/vdi.h"

int vdi_log_threshold = VDI_LOG_LEVEL_INFO;

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static vdi_log_sink_fn log_sink;
static void *log_sink_ctx;
static const char *log_program;
static int log_journal = -1; /* -1 unknown, 0 no, 1 stderr is the journal */

static const char *level_name(int level)
{
    switch (level) {
    case VDI_LOG_LEVEL_ERR:
        return "E";
    case VDI_LOG_LEVEL_WARN:
        return "W";
    case VDI_LOG_LEVEL_INFO:
        return "I";
    default:
        return "D";
    }
}

/* systemd sets JOURNAL_STREAM=dev:ino for the stream it connected to our stderr. */
static int stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    struct stat st;
    unsigned long long dev, ino;
    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
        return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void vdi_log_emit(int level, const char *tag, const char *fmt, ...)
{
    char line[2048];
    size_t n = 0;
    int saved_errno = errno;

    pthread_mutex_lock(&log_lock);
    if (log_journal < 0)
        log_journal = stderr_is_journal();
    if (log_journal && !log_sink) {
        n += (size_t)snprintf(line, sizeof(line), "<%d>", level);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n += strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
        n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ %s ", ts.tv_nsec / 1000000,
                              level_name(level));
    }
    if (log_program)
        n += (size_t)snprintf(line + n, sizeof(line) - n, "%s: ", log_program);
    n += (size_t)snprintf(line + n, sizeof(line) - n, "%s: ", tag);
    if (n < sizeof(line)) {
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += (size_t)m;
    }
    if (n > sizeof(line) - 2) {
        /* Truncated: say so rather than cut silently. */
        n = sizeof(line) - 5;
        memcpy(line + n, "...", 3);
        n += 3;
    }
    line[n++] = '\n';
    line[n] = '\0';
    if (log_sink) {
        log_sink(level, line, log_sink_ctx);
    } else {
        const char *p = line;
        while (n > 0) {
            ssize_t w = write(STDERR_FILENO, p, n);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            p += w;
            n -= (size_t)w;
        }
    }
    pthread_mutex_unlock(&log_lock);
    errno = saved_errno;
}

void vdi_log_set_level(int level)
{
    __atomic_store_n(&vdi_log_threshold, level, __ATOMIC_RELAXED);
}

int vdi_log_parse_level(const char *s)
{
    static const struct {
        const char *name;
        int level;
    } names[] = {
        {"err", VDI_LOG_LEVEL_ERR},   {"error", VDI_LOG_LEVEL_ERR},
        {"warn", VDI_LOG_LEVEL_WARN}, {"warning", VDI_LOG_LEVEL_WARN},
        {"info", VDI_LOG_LEVEL_INFO}, {"debug", VDI_LOG_LEVEL_DEBUG},
        {"3", VDI_LOG_LEVEL_ERR},     {"4", VDI_LOG_LEVEL_WARN},
        {"6", VDI_LOG_LEVEL_INFO},    {"7", VDI_LOG_LEVEL_DEBUG},
    };
    if (!s)
        return -EINVAL;
    for (size_t i = 0; i < VDI_ARRAY_SIZE(names); i++)
        if (strcasecmp(s, names[i].name) == 0)
            return names[i].level;
    return -EINVAL;
}

void vdi_log_init_from_env(void)
{
    const char *s = getenv("VDI_LOG_LEVEL");
    if (!s || !*s)
        return;
    int level = vdi_log_parse_level(s);
    if (level < 0) {
        vdi_log_emit(VDI_LOG_LEVEL_WARN, "log",
                     "VDI_LOG_LEVEL=%s is not one of err, warn, info, debug; keeping the default",
                     s);
        return;
    }
    vdi_log_set_level(level);
}

void vdi_log_set_program(const char *name)
{
    pthread_mutex_lock(&log_lock);
    log_program = name;
    pthread_mutex_unlock(&log_lock);
}

void vdi_log_set_sink(vdi_log_sink_fn sink, void *ctx)
{
    pthread_mutex_lock(&log_lock);
    log_sink = sink;
    log_sink_ctx = ctx;
    pthread_mutex_unlock(&log_lock);
}

static pthread_mutex_t rl_lock = PTHREAD_MUTEX_INITIALIZER;

bool vdi_ratelimit_ok(vdi_ratelimit_t *rl, uint32_t burst, uint32_t interval_ms,
                      uint32_t *suppressed)
{
    uint64_t now = vdi_now_ms();
    bool ok;
    pthread_mutex_lock(&rl_lock);
    *suppressed = 0;
    if (rl->window_start_ms == 0 || now - rl->window_start_ms >= interval_ms) {
        *suppressed = rl->suppressed;
        rl->window_start_ms = now ? now : 1;
        rl->count = 0;
        rl->suppressed = 0;
    }
    ok = rl->count < burst;
    if (ok)
        rl->count++;
    else
        rl->suppressed++;
    pthread_mutex_unlock(&rl_lock);
    return ok;
}
