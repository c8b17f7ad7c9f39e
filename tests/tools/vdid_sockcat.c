/* tests/tools/vdid_sockcat.c: send stdin to a unix stream socket and copy what comes back to
 * stdout until the peer closes or nothing arrives for a second. For tests of vdid's admin socket
 * with raw (also malformed) input. Usage: vdid_sockcat PATH */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char buf[65536];
    if (argc != 2 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "usage: vdid_sockcat PATH\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    strcpy(sa.sun_path, argv[1]);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        perror(argv[1]);
        return 1;
    }
    ssize_t n;
    while ((n = read(0, buf, sizeof(buf))) > 0)
        if (write(fd, buf, (size_t)n) != n) /* a peer that closed early is a result too */
            break;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 1000) <= 0)
            break;
        n = read(fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        fwrite(buf, 1, (size_t)n, stdout);
    }
    close(fd);
    return 0;
}
