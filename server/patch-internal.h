/* server/patch-internal.h: central patching in vdid (patch.c, patch-bundle.c; docs/images.md).
 * `image.patch` makes the next version of an image as an overlay on its current one, boots a
 * maintenance VM on it with the patch bundle on a second, read-only disk, follows the guest's
 * serial console for the agent's output and its "PATCH EXIT N" line, and publishes the version
 * only when the patch exited 0, the VM powered off and the disk passes check.
 *
 * Thread: loop, except srv__bundle_write (the patch worker).
 */
#ifndef VDI_SERVER_PATCH_INTERNAL_H
#define VDI_SERVER_PATCH_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct srv;

/* Whose files a bundle is read as: the admin socket peer's uid and gid (their other groups are
 * looked up), or anyone's (@any: root). */
struct srv_reader {
    bool any;
    uid_t uid;
    gid_t gid;
};
/* Write the bundle disk @out (created; must not exist): a ustar archive of script @script (a
 * file) or @script_text (its text) as `run` (mode 0755), or of directory @dir (which must hold
 * an executable `run`), at most @limit bytes of files, reading only what @reader may read (NULL:
 * anything). 0, or a negative code with the reason in @why (and @out removed). */
int srv__bundle_write(const char *out, const char *script, const char *script_text, const char *dir,
                      const struct srv_reader *reader, uint64_t limit, char *why, size_t whylen);

struct srv_patch_req {
    const char *image;
    const char *script;       /* absolute path of a script, or ... */
    const char *bundle;       /* ... of a bundle directory, or ... */
    const char *script_text;  /* ... the script's text (exactly one of the three) */
    struct srv_reader reader; /* whose files @script and @bundle are read as */
    const char *notes;        /* for the manifest; NULL: "patch ID" */
    const char *actor;        /* for the audit log ("admin", the web admin's user) */
    uint32_t deadline_s;
    uint64_t memory; /* bytes */
    unsigned vcpus;
    bool flatten;
    const char *network; /* a pool whose network the maintenance VM joins; NULL: no network */
};
#define SRV_PATCH_DEADLINE_S (30 * 60)
#define SRV_PATCH_MEMORY     (1024ULL << 20)
#define SRV_PATCH_ID_MAX     16 /* "p" and a number */
#define SRV_PATCH_TEXT_MAX   (256 * 1024)

/* Start a patch; *id gets its id. 0, or a negative code with the reason in @why (-EBUSY: a
 * patch of that image is running; @why names it). */
int srv__patch_start(struct srv *s, const struct srv_patch_req *r, char *id, size_t idlen,
                     char *why, size_t whylen);
/* One patch as JSON: id, image, state (preparing, running, publishing, published, failed),
 * base_version, version (published), exit, reason, started, ended, deadline, and its output
 * from byte @from of the stream on ("output", "next": where the next call should start).
 * NULL when there is no such patch. */
json_t *srv__patch_json(struct srv *s, const char *id, uint64_t from);
/* The patches this vdid ran (newest first, without output). */
json_t *srv__patches_json(struct srv *s);
/* At start: patches an earlier vdid left running are stopped and recorded as failed. */
void srv__patches_init(struct srv *s);
/* At stop: stop the maintenance VMs (a patch does not outlive vdid). */
void srv__patches_stop(struct srv *s);
/* Free what is left, once the loop has closed every handle (srv__daemon_fini). */
void srv__patches_fini(struct srv *s);
/* Does a running maintenance VM have jail uid @uid? */
bool srv__patch_uid_used(struct srv *s, uid_t uid);

#endif
