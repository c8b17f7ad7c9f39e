/* golden-images/testdesk/patch.h: testdesk's patch agent and the data area it patches (prefix
 * `tp_`). Pure code on byte buffers and callbacks, so that the same functions run freestanding in
 * testdesk and hosted in vdid's stand-in VMM (tests/tools/vdid_fakevmm.c) and the test tools.
 *
 * The data area: TP_AREA_BYTES at byte TP_AREA_OFFSET of the system disk (disk 0) hold testdesk's
 * "files": "TDFS1\n", then for each file "NAME LENGTH\n" and LENGTH bytes and "\n", then "END\n";
 * zeros after. A disk whose area does not start with the magic has no files. A file called
 * `banner` is drawn in the title bar; a file called `crash` (a number of milliseconds) makes the
 * guest crash on purpose that long after it is ready, and one called `hang` makes its guest agent
 * stop that long after (tp_file_ms).
 *
 * The bundle: a maintenance VM gets the patch as a read-only second disk holding a ustar archive
 * (vdid writes it; `tar` reads it). Its member `run` is, for testdesk, a script of its own:
 *   # comment                  blank lines too
 *   echo TEXT                  print TEXT
 *   banner TEXT                set the banner file
 *   write NAME TEXT            set file NAME to TEXT (one line)
 *   copy MEMBER NAME           set file NAME to bundle member MEMBER's bytes
 *   fetch HOST PORT NAME       set file NAME to what a server on the network sends: the agent
 *                              (on a lease from DHCP) sends the UDP datagram "GET NAME\n" to
 *                              HOST (an address, or `gw`) at PORT and takes the reply
 *                              datagram's bytes (1..TP_DATA_MAX; empty: no such file); three
 *                              tries a second apart. Needs a network (`image patch --network`)
 *   remove NAME                remove file NAME
 *   sleep MS                   wait
 *   exit N                     stop, with exit status N (0..255); the end of the script is exit 0
 *   hang                       never finish (for testing deadlines)
 * The agent prints one line per command, and the caller prints "PATCH EXIT N" at the end.
 *
 * Not thread-safe: one caller at a time. Needs memcpy, memset, memcmp, strlen, strcmp.
 */
#ifndef VDI_TESTDESK_PATCH_H
#define VDI_TESTDESK_PATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TP_AREA_OFFSET (4ULL << 20) /* 4 MiB into disk 0 */
#define TP_AREA_BYTES  (64U << 10)
#define TP_FILES_MAX   32
#define TP_NAME_MAX    48   /* with the NUL */
#define TP_DATA_MAX    2048 /* bytes per file */
#define TP_SCRIPT_MAX  (64U << 10)
#define TP_LINE_MAX    256

struct tp_file {
    char name[TP_NAME_MAX];
    uint32_t len;
    char data[TP_DATA_MAX + 1]; /* NUL-terminated for printing; may hold NULs itself */
};

struct tp_area {
    unsigned n;
    struct tp_file f[TP_FILES_MAX];
};

/* Parse a data area (@n bytes, at least the used part). Returns 1 (files found, maybe none), 0
 * (no magic: an empty area) or -1 (damaged: the reason in @why). */
int tp_area_parse(const uint8_t *buf, size_t n, struct tp_area *a, char *why, size_t whylen);
/* Write @a into @buf (@n bytes, zero-filled after the end). Returns 0, or -1 if it does not fit. */
int tp_area_format(const struct tp_area *a, uint8_t *buf, size_t n);
const struct tp_file *tp_area_get(const struct tp_area *a, const char *name);
/* Set file @name (a valid name: [A-Za-z0-9._-], 1..47) to @len bytes. 0, or -1 (bad name, too
 * long, or TP_FILES_MAX files already). */
int tp_area_put(struct tp_area *a, const char *name, const void *data, size_t len);
/* 0, or -1 when there is no such file. */
int tp_area_remove(struct tp_area *a, const char *name);
bool tp_name_ok(const char *name);

/* The `crash` and `hang` files: requests, for testing image versions that are broken, to crash
 * on purpose (a triple fault in testdesk) or to stop the guest agent (no more heartbeats), MS
 * milliseconds after the guest is ready. Their text is MS in decimal, white space around it
 * allowed, at most TP_FILE_MS_MAX. Returns 1 with *ms, 0 when @a has no file @name, -1 when its
 * text is not such a number (the reason in @why). */
#define TP_FILE_MS_MAX 86400000U /* a day */
int tp_file_ms(const struct tp_area *a, const char *name, uint64_t *ms, char *why, size_t whylen);

/* A user's data disk (the second disk of a desktop whose pool has user_disk, when the command
 * line says testdesk.data=N): sector 0 holds "TDDATA1\nboots=N\n" and zeros. Count one boot in
 * @sector (512 bytes; all zeros is a new disk). Returns the new count, or 0 when the sector
 * holds something else (then it is left alone). */
uint64_t tp_data_boot(uint8_t *sector);

/* Read @len bytes at byte @off of the bundle disk; 0 or -1. */
typedef int (*tp_read_fn)(void *ctx, uint64_t off, void *buf, size_t len);
/* Is this 512-byte block a ustar header? */
bool tp_tar_header(const uint8_t *block);
/* Find member @name ("run" also matches "./run") of the ustar archive on a disk of
 * @disk_bytes. Returns 1 with its data's byte offset and size, 0 (not an archive, or no such
 * regular file), or -1 (a read failed, or a header points past the disk). */
int tp_tar_find(tp_read_fn rd, void *ctx, uint64_t disk_bytes, const char *name, uint64_t *off,
                uint64_t *size);

struct tp_env {
    void *ctx;
    void (*out)(void *ctx, const char *line); /* one line of output, no newline */
    void (*sleep_ms)(void *ctx, unsigned ms); /* `sleep` */
    tp_read_fn rd;                            /* the bundle disk, for `copy` */
    uint64_t bundle_bytes;
    /* `fetch`: the reply of HOST at UDP PORT to "GET NAME\n" into @buf (@cap bytes); 0 with its
     * length in *len (more than @cap: it was cut), or -1 with the reason in @why. NULL: the
     * machine has no network. */
    int (*fetch)(void *ctx, const char *host, unsigned port, const char *name, void *buf,
                 size_t cap, size_t *len, char *why, size_t whylen);
};
enum tp_result {
    TP_EXIT = 0, /* *exit_code holds the status */
    TP_HANG = 1  /* the script asked never to finish */
};
/* Run script @s (@len bytes) against @a. */
enum tp_result tp_script_run(const char *s, size_t len, struct tp_area *a, const struct tp_env *env,
                             int *exit_code);

#endif
