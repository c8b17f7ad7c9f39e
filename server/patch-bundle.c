/* server/patch-bundle.c: a patch bundle as the disk a maintenance VM reads it from: a ustar
 * archive (POSIX.1-1988, what `tar -xf /dev/vdb` and testdesk's agent read) of either one script
 * (member `run`, mode 0755) or a directory that holds an executable `run` and the files it
 * needs. Regular files and directories only: a symlink, device or FIFO in the bundle is refused
 * by name, so that nothing outside the directory ends up in the archive.
 *
 * vdid reads the files as root on behalf of an admin who may not be (a member of admin_group):
 * every directory and file is opened relative to its parent's descriptor without following a
 * symlink, and read only when that admin could read it (search permission on each directory on
 * the way, read permission on each directory listed and each file: owner, group and other bits
 * against their uid and groups). So a bundle holds nothing its admin could not read themselves.
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
#include "server/internal.h"
#include "server/patch-internal.h"

#define BLOCK     512
#define MAX_DEPTH 16

struct tw {
    int fd;
    uint64_t bytes, limit;
    char *why;
    size_t whylen;
    bool any;    /* the reader may read anything (root) */
    uid_t uid;   /* else: the reader's uid, ... */
    gid_t *gids; /* ... primary and supplementary groups */
    int n_gids;
};

/* May the reader read (@want: 4), search (1) or both (5) what @st describes? */
static bool may(const struct tw *w, const struct stat *st, unsigned want)
{
    if (w->any)
        return true;
    unsigned bits = st->st_mode & 7;
    if (st->st_uid == w->uid) {
        bits = (st->st_mode >> 6) & 7;
    } else {
        for (int i = 0; i < w->n_gids; i++)
            if (w->gids[i] == st->st_gid) {
                bits = (st->st_mode >> 3) & 7;
                break;
            }
    }
    return (bits & want) == want;
}

/* The reader's groups: their account's, and the gid they asked with (NSS may block: the patch
 * worker). */
static void reader_groups(struct tw *w, gid_t gid)
{
    gid_t *g;
    int n = srv__uid_groups(w->uid, &g);
    w->gids = vdi_xrealloc(g, sizeof(*w->gids) * (size_t)(n + 1));
    w->gids[n] = gid;
    w->n_gids = n + 1;
}

static int denied(struct tw *w, const char *path)
{
    snprintf(w->why, w->whylen, "bundle: %s: permission denied for uid %u", path, (unsigned)w->uid);
    return -EACCES;
}

/* Open @path (absolute) for reading as the reader: each directory on the way searchable by
 * them, the last component not a symlink, readable by them (and searchable, @dir). Returns the
 * descriptor or a negative code (the reason in w->why). */
static int open_as(struct tw *w, const char *path, bool dir)
{
    char *real = realpath(path, NULL);
    if (!real) {
        int rc = -errno;
        snprintf(w->why, w->whylen, "bundle: cannot read %s: %s", path, vdi_strerror(rc));
        return rc;
    }
    int cur = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC), rc = 0;
    char *save = NULL, *comp = strtok_r(real + 1, "/", &save);
    while (cur >= 0 && comp) {
        char *next = strtok_r(NULL, "/", &save);
        struct stat st;
        if (fstat(cur, &st) < 0) {
            rc = -errno;
            snprintf(w->why, w->whylen, "bundle: cannot read %s: %s", path, vdi_strerror(rc));
            break;
        }
        if (!may(w, &st, 1)) {
            rc = denied(w, path);
            break;
        }
        int flags = O_CLOEXEC | O_NOFOLLOW | (next ? O_PATH | O_DIRECTORY : O_RDONLY);
        if (!next && dir)
            flags |= O_DIRECTORY;
        int fd = openat(cur, comp, flags);
        if (fd < 0) {
            rc = -errno;
            snprintf(w->why, w->whylen, "bundle: cannot read %s: %s", path, vdi_strerror(rc));
            break;
        }
        close(cur);
        cur = fd;
        comp = next;
    }
    free(real);
    if (rc < 0 || cur < 0) {
        if (cur >= 0)
            close(cur);
        return rc < 0 ? rc : -errno;
    }
    struct stat st;
    if (fstat(cur, &st) < 0 || !may(w, &st, dir ? 5 : 4)) {
        close(cur);
        return denied(w, path);
    }
    return cur;
}

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

/* Add the file open on @fd (taken: closed here; -1: opening failed, errno says why) as @name;
 * @path names it in messages. */
static int add_file(struct tw *w, int fd, const char *path, const char *name, mode_t mode)
{
    int rc;
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
    if (!may(w, &st, 4)) {
        close(fd);
        return denied(w, path);
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

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Add the directory open on @dfd (taken), named @dir in messages, its members as @prefix... */
static int add_dir(struct tw *w, int dfd, const char *dir, const char *prefix, int depth)
{
    if (depth > MAX_DEPTH) {
        close(dfd);
        snprintf(w->why, w->whylen, "bundle: %s is nested more than %d directories deep", dir,
                 MAX_DEPTH);
        return -ELOOP;
    }
    struct stat dst;
    if (fstat(dfd, &dst) < 0 || !may(w, &dst, 5)) {
        close(dfd);
        return denied(w, dir);
    }
    int lfd = dup(dfd);
    DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;
    if (!d) {
        int rc = -errno;
        if (lfd >= 0)
            close(lfd);
        close(dfd);
        snprintf(w->why, w->whylen, "bundle: cannot list %s: %s", dir, vdi_strerror(rc));
        return rc;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            names = vdi_xrealloc(names, (n + 1) * sizeof(*names));
            names[n++] = vdi_xstrdup(e->d_name);
        }
    closedir(d);
    if (n)
        qsort(names, n, sizeof(*names), by_name);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        const char *m = names[i];
        if (rc < 0)
            continue;
        char *path = vdi_xasprintf("%s/%s", dir, m);
        char *name = vdi_xasprintf("%s%s", prefix, m);
        struct stat st;
        if (fstatat(dfd, m, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            rc = -errno;
            snprintf(w->why, w->whylen, "bundle: %s: %s", path, vdi_strerror(rc));
        } else if (S_ISDIR(st.st_mode)) {
            char *sub = vdi_xasprintf("%s/", name);
            int sfd = openat(dfd, m, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sfd < 0) {
                rc = -errno;
                snprintf(w->why, w->whylen, "bundle: cannot read %s: %s", path, vdi_strerror(rc));
            } else {
                rc = header(w, sub, '5', st.st_mode, 0, st.st_mtime);
                if (rc == 0)
                    rc = add_dir(w, sfd, path, sub, depth + 1);
                else
                    close(sfd);
            }
            free(sub);
        } else if (S_ISREG(st.st_mode)) {
            rc = add_file(w, openat(dfd, m, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), path, name, 0);
        } else {
            snprintf(w->why, w->whylen,
                     "bundle: %s is a %s; a bundle holds only regular files and directories", path,
                     S_ISLNK(st.st_mode) ? "symbolic link" : "special file");
            rc = -EINVAL;
        }
        free(path);
        free(name);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    close(dfd);
    return rc;
}

int srv__bundle_write(const char *out, const char *script, const char *script_text, const char *dir,
                      const struct srv_reader *reader, uint64_t limit, char *why, size_t whylen)
{
    struct stat st;
    int rc;
    struct tw w = {.limit = limit, .why = why, .whylen = whylen, .any = !reader || reader->any};
    if (!w.any) {
        w.uid = reader->uid;
        reader_groups(&w, reader->gid);
    }
    /* The script or directory, opened as the reader before anything is written. */
    int src = -1;
    if (script || dir) {
        src = open_as(&w, script ? script : dir, dir != NULL);
        if (src < 0) {
            free(w.gids);
            return src;
        }
    }
    if (dir) {
        char *run = vdi_xasprintf("%s/run", dir);
        rc = lstat(run, &st) < 0 ? -errno : 0;
        if (rc < 0)
            snprintf(why, whylen, "bundle %s has no run: %s", dir, vdi_strerror(rc));
        else if (!S_ISREG(st.st_mode) || !(st.st_mode & S_IXUSR))
            snprintf(why, whylen, "bundle %s: run must be an executable regular file", dir),
                rc = -EINVAL;
        free(run);
        if (rc < 0) {
            close(src);
            free(w.gids);
            return rc;
        }
    }
    w.fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (w.fd < 0) {
        rc = -errno;
        snprintf(why, whylen, "cannot create %s: %s", out, vdi_strerror(rc));
        if (src >= 0)
            close(src);
        free(w.gids);
        return rc;
    }
    if (dir)
        rc = header(&w, "./", '5', 0755, 0, time(NULL));
    else
        rc = 0;
    if (rc == 0 && dir) {
        rc = add_dir(&w, src, dir, "./", 0);
    } else if (rc == 0 && script) {
        rc = add_file(&w, src, script, "./run", 0755);
    } else if (rc == 0) { /* the script's text (the web view) */
        size_t len = strlen(script_text);
        rc = header(&w, "./run", '0', 0755, len, time(NULL));
        if (rc == 0)
            rc = put(&w, script_text, len);
        static const uint8_t pad[BLOCK];
        if (rc == 0 && len % BLOCK)
            rc = put(&w, pad, BLOCK - len % BLOCK);
    } else if (src >= 0) {
        close(src);
    }
    /* The end: two zero blocks, then zeros to a whole MiB (a disk of a round size). */
    static const uint8_t zero[BLOCK];
    for (int i = 0; rc == 0 && (i < 2 || w.bytes % (1 << 20)); i++)
        rc = put(&w, zero, BLOCK);
    if (rc == 0 && fsync(w.fd) < 0) {
        rc = -errno;
        snprintf(why, whylen, "cannot write %s: %s", out, vdi_strerror(rc));
    }
    close(w.fd);
    free(w.gids);
    if (rc < 0)
        unlink(out);
    return rc;
}
