/* tests/tools/vmm-ctl.c: a client for vdi-vmm's control socket, for the test suites.
 *
 *   vmm-ctl [-w EVENT] [-t SECONDS] SOCKET [LINE]...
 *
 * Sends each LINE (verbatim, plus a newline) and prints the reply line it gets for it. With -w,
 * it then keeps reading and printing lines until one carries "event":"EVENT" (exit 0) or the
 * timeout passes (exit 1). Exit 1 also when the socket closes early. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static char buf[1 << 16];
static size_t have;

/* Read one line into @out (NUL-terminated, without the newline); 0 on success. */
static int read_line(int fd, char *out, size_t cap, int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long end = ts.tv_sec * 1000LL + ts.tv_nsec / 1000000 + timeout_ms;
    for (;;) {
        char *nl = memchr(buf, '\n', have);
        if (nl) {
            size_t n = (size_t)(nl - buf);
            if (n >= cap)
                n = cap - 1;
            memcpy(out, buf, n);
            out[n] = 0;
            have -= (size_t)(nl - buf) + 1;
            memmove(buf, nl + 1, have);
            return 0;
        }
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long long now = ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
        if (now >= end)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(end - now)) <= 0)
            continue;
        ssize_t r = read(fd, buf + have, sizeof(buf) - have);
        if (r <= 0)
            return -1;
        have += (size_t)r;
    }
}

int main(int argc, char **argv)
{
    const char *wait_event = NULL;
    int timeout_s = 30, c;
    while ((c = getopt(argc, argv, "w:t:")) != -1) {
        if (c == 'w')
            wait_event = optarg;
        else if (c == 't')
            timeout_s = atoi(optarg);
        else
            return 2;
    }
    if (optind >= argc) {
        fprintf(stderr, "usage: vmm-ctl [-w EVENT] [-t SECONDS] SOCKET [LINE]...\n");
        return 2;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", argv[optind]);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        perror(argv[optind]);
        return 1;
    }
    static char line[1 << 16];
    for (int i = optind + 1; i < argc; i++) {
        size_t n = strlen(argv[i]);
        if (write(fd, argv[i], n) != (ssize_t)n || write(fd, "\n", 1) != 1) {
            perror("write");
            return 1;
        }
        /* Events may arrive before the reply: print them, keep going until a non-event line. */
        for (;;) {
            if (read_line(fd, line, sizeof(line), timeout_s * 1000) < 0) {
                fprintf(stderr, "vmm-ctl: no reply to %s\n", argv[i]);
                return 1;
            }
            printf("%s\n", line);
            if (!strstr(line, "\"event\""))
                break;
            if (wait_event) {
                char want[256];
                snprintf(want, sizeof(want), "\"event\":\"%s\"", wait_event);
                if (strstr(line, want))
                    wait_event = NULL;
            }
        }
        fflush(stdout);
    }
    if (wait_event) {
        char want[256];
        snprintf(want, sizeof(want), "\"event\":\"%s\"", wait_event);
        for (;;) {
            if (read_line(fd, line, sizeof(line), timeout_s * 1000) < 0) {
                fprintf(stderr, "vmm-ctl: no %s event\n", wait_event);
                return 1;
            }
            printf("%s\n", line);
            fflush(stdout);
            if (strstr(line, want))
                break;
        }
    }
    close(fd);
    return 0;
}
