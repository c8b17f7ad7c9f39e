/* server/patch-bundle.c: a patch bundle as the disk a maintenance VM reads it from: a ustar
 * archive (POSIX.1-1988, what `tar -xf /dev/vdb` and testdesk's agent read) of either one script
 * (member `run`, mode 0755) or a directory that holds an executable `run` and the files it
 * needs. Regular files and directories only: a symlink, device or FIFO in the bundle is refused
 * by name, so that nothing outside the directory ends up in the archive.
 *
 * Thread: the patch worker (blocking file I/O); nothing here touches the loop.
 */
#define VDI_LOG_TAG "patch"
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/vdi.h"
#include "server/patch-internal.h"

#define BLOCK     512
#define MAX_DEPTH 16

struct tw {
    int fd;
    uint64_t bytes, limit;
    char *why;
    size_t whylen;
};

static int put(struct tw *w, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t r = write(w->fd, b, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int rc = -errno;
            snprintf(w->why, w->whylen, "cannot write the bundle disk: %s", vdi_strerror(rc));
            return rc;
        }
        b += r;
        n -= (size_t)r;
        w->bytes += (uint64_t)r;
    }
    return 0;
}

/* One header block for @name (relative, "./" first as GNU tar writes it). */
static int header(struct tw *w, const char *name, char type, mode_t mode, uint64_t size,
                  time_t mtime)
{
    uint8_t h[BLOCK] = {0};
    size_t len = strlen(name);
    const char *base = name;
    if (len > 100) { /* split at a '/' into prefix (155) and name (100) */
        const char *cut = NULL;
        for (const char *p = name; *p; p++)
            if (*p == '/' && (size_t)(p - name) <= 155 && strlen(p + 1) <= 100 && p[1])
                cut = p;
        if (!cut) {
            snprintf(w->why, w->whylen, "bundle: path %s is too long for a ustar archive", name);
            return -ENAMETOOLONG;
        }
        memcpy(h + 345, name, (size_t)(cut - name));
        base = cut + 1;
    }
    memcpy(h, base, strlen(base));
    snprintf((char *)h + 100, 8, "%07o", (unsigned)(mode & 07777));
    snprintf((char *)h + 108, 8, "%07o", 0u);
    snprintf((char *)h + 116, 8, "%07o", 0u);
    if (size >= 1ULL << 33) {
        snprintf(w->why, w->whylen, "bundle: %s is 8 GiB or more (ustar's limit)", name);
        return -EFBIG;
    }
    uint64_t t = mtime > 0 && (uint64_t)mtime < 1ULL << 33 ? (uint64_t)mtime : 0;
    char num[24];
    snprintf(num, sizeof(num), "%011llo", (unsigned long long)size);
    memcpy(h + 124, num, 12);
    snprintf(num, sizeof(num), "%011llo", (unsigned long long)t);
    memcpy(h + 136, num, 12);
    memset(h + 148, ' ', 8);
    h[156] = (uint8_t)type;
    memcpy(h + 257, "ustar", 6); /* "ustar\0" */
    memcpy(h + 263, "00", 2);
    memcpy(h + 265, "root", 4);
    memcpy(h + 297, "root", 4);
    unsigned sum = 0;
    for (size_t i = 0; i < BLOCK; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum); /* six digits, NUL, and the space kept */
    h[155] = ' ';
    return put(w, h, BLOCK);
}

static int add_file(struct tw *w, const char *path, const char *name, mode_t mode)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), rc;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        rc = -errno;
        snprintf(w->why, w->whylen, "bundle: cannot read %s: %s", path, vdi_strerror(rc));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        snprintf(w->why, w->whylen, "bundle: %s is not a regular file", path);
        return -EINVAL;
    }
    if ((uint64_t)st.st_size > w->limit || w->bytes > w->limit - (uint64_t)st.st_size) {
        close(fd);
        snprintf(w->why, w->whylen, "bundle: larger than %llu MiB with %s",
                 (unsigned long long)(w->limit >> 20), path);
        return -EFBIG;
    }
    rc = header(w, name, '0', mode ? mode : st.st_mode, (uint64_t)st.st_size, st.st_mtime);
    uint8_t buf[64 * 1024];
    uint64_t left = (uint64_t)st.st_size;
    while (rc == 0 && left) {
        ssize_t r = read(fd, buf, left < sizeof(buf) ? (size_t)left : sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = r < 0 ? -errno : -EIO;
            snprintf(w->why, w->whylen, "bundle: cannot read %s: %s", path,
                     r < 0 ? vdi_strerror(rc) : "it shrank while being read");
            break;
        }
        rc = put(w, buf, (size_t)r);
        left -= (uint64_t)r;
    }
    close(fd);
    static const uint8_t zero[BLOCK];
    if (rc == 0 && st.st_size % BLOCK)
        rc = put(w, zero, BLOCK - (size_t)(st.st_size % BLOCK));
    return rc;
}

static int add_dir(struct tw *w, const char *dir, const char *prefix, int depth)
{
    if (depth > MAX_DEPTH) {
        snprintf(w->why, w->whylen, "bundle: %s is nested more than %d directories deep", dir,
                 MAX_DEPTH);
        return -ELOOP;
    }
    struct dirent **ents;
    int n = scandir(dir, &ents, NULL, alphasort), rc = 0;
    if (n < 0) {
        rc = -errno;
        snprintf(w->why, w->whylen, "bundle: cannot list %s: %s", dir, vdi_strerror(rc));
        return rc;
    }
    for (int i = 0; i < n; i++) {
        const char *e = ents[i]->d_name;
        if (rc < 0 || !strcmp(e, ".") || !strcmp(e, ".."))
            continue;
        char *path = vdi_xasprintf("%s/%s", dir, e);
        char *name = vdi_xasprintf("%s%s", prefix, e);
        struct stat st;
        if (lstat(path, &st) < 0) {
            rc = -errno;
            snprintf(w->why, w->whylen, "bundle: %s: %s", path, vdi_strerror(rc));
        } else if (S_ISDIR(st.st_mode)) {
            char *sub = vdi_xasprintf("%s/", name);
            rc = header(w, sub, '5', st.st_mode, 0, st.st_mtime);
            if (rc == 0)
                rc = add_dir(w, path, sub, depth + 1);
            free(sub);
        } else if (S_ISREG(st.st_mode)) {
            rc = add_file(w, path, name, 0);
        } else {
            snprintf(w->why, w->whylen,
                     "bundle: %s is a %s; a bundle holds only regular files and directories", path,
                     S_ISLNK(st.st_mode) ? "symbolic link" : "special file");
            rc = -EINVAL;
        }
        free(path);
        free(name);
    }
    for (int i = 0; i < n; i++)
        free(ents[i]);
    free(ents);
    return rc;
}

int srv__bundle_write(const char *out, const char *script, const char *dir, uint64_t limit,
                      char *why, size_t whylen)
{
    struct stat st;
    int rc;
    if (dir) {
        char *run = vdi_xasprintf("%s/run", dir);
        rc = lstat(run, &st) < 0 ? -errno : 0;
        if (rc < 0)
            snprintf(why, whylen, "bundle %s has no run: %s", dir, vdi_strerror(rc));
        else if (!S_ISREG(st.st_mode) || !(st.st_mode & S_IXUSR))
            snprintf(why, whylen, "bundle %s: run must be an executable regular file", dir),
                rc = -EINVAL;
        free(run);
        if (rc < 0)
            return rc;
    }
    struct tw w = {.limit = limit, .why = why, .whylen = whylen};
    w.fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (w.fd < 0) {
        rc = -errno;
        snprintf(why, whylen, "cannot create %s: %s", out, vdi_strerror(rc));
        return rc;
    }
    if (dir)
        rc = header(&w, "./", '5', 0755, 0, time(NULL));
    else
        rc = 0;
    if (rc == 0)
        rc = dir ? add_dir(&w, dir, "./", 0) : add_file(&w, script, "./run", 0755);
    /* The end: two zero blocks, then zeros to a whole MiB (a disk of a round size). */
    static const uint8_t zero[BLOCK];
    for (int i = 0; rc == 0 && (i < 2 || w.bytes % (1 << 20)); i++)
        rc = put(&w, zero, BLOCK);
    if (rc == 0 && fsync(w.fd) < 0) {
        rc = -errno;
        snprintf(why, whylen, "cannot write %s: %s", out, vdi_strerror(rc));
    }
    close(w.fd);
    if (rc < 0)
        unlink(out);
    return rc;
}
