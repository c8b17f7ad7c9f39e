/* golden-images/cli.c: `vdictl image ...`: the image catalogue and file-level image tools.
 * Human output by default, --json for scripts; a progress bar on stderr when it is a terminal. */
#define VDI_LOG_TAG "vdictl"
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/vdi.h"
#include "golden-images/img.h"

struct cli {
    bool json, quiet, repair, unsafe, current, allow_backing_outside, force;
    const char *state, *format, *backing, *backing_fmt, *kernel, *initrd, *cmdline, *notes, *holder;
    uint32_t cluster_size;
    bool backing_set;
    char **args;
    int nargs;
};

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: vdictl image COMMAND [OPTION]... [ARG]...\n"
            "Golden images (the catalogue under STATE/images/) and disk image files.\n"
            "\n"
            "Catalogue:\n"
            "  list                         images with their versions and current version\n"
            "  import NAME DISK             add a version (DISK raw or qcow2, flattened; its\n"
            "                               backing files must lie in DISK's directory);\n"
            "                               --kernel F --initrd F --cmdline S --notes S --current\n"
            "  publish NAME OVERLAY         add a version from an overlay on one of NAME's\n"
            "                               versions (kept as an overlay); same options\n"
            "  show NAME[@V]                a version's manifest and users (also: info NAME)\n"
            "  set-current NAME V           make version V current (rollback)\n"
            "  remove NAME V                remove a version nothing uses\n"
            "  clone NAME[@V] DEST          new overlay DEST on a version (O(1)); --holder ID\n"
            "                               also records desktop ID as a user of the version\n"
            "  verify NAME[@V]              recompute and compare the sha256 of its files\n"
            "  patch NAME --script F|--bundle D  (through vdid) boot a maintenance VM that\n"
            "                               runs the patch, publish the result as the next\n"
            "                               version; see vdictl image patch --help\n"
            "  patches [ID]                 (through vdid) patches and their output\n"
            "  rollouts [--pool P] [--all]  (through vdid) each pool's move to the current\n"
            "                               version: canary, waves, health, rollbacks\n"
            "Files:\n"
            "  create FILE [SIZE]           -f raw|qcow2, -b BACKING [-F FMT], -c CLUSTER_SIZE\n"
            "  info FILE                    format, sizes, backing chain\n"
            "  check FILE                   qcow2 consistency; -r repairs (exit 0 clean, 2\n"
            "                               errors, 3 leaks only)\n"
            "  commit FILE                  write an overlay's data into its backing file\n"
            "  rebase -b BACKING FILE       change the backing file (-b '' none; -u header only)\n"
            "  convert SRC DST              -O raw|qcow2 (default qcow2), -c CLUSTER_SIZE;\n"
            "                               SRC's backing files must lie in SRC's directory\n"
            "                               unless --allow-backing-outside (never devices);\n"
            "                               an existing DST is refused unless --force\n"
            "\n"
            "Options:\n"
            "  --state DIR   state directory (default $VDI_STATE_DIR or /var/lib/vdi)\n"
            "  --json        machine-readable output\n"
            "  -q, --quiet   no progress bar\n"
            "  -h, --help    this help\n");
}

/* ---- progress bar ------------------------------------------------------------------------- */

struct bar {
    bool on;
    int last;
    const char *what;
};

static void progress(uint64_t done, uint64_t total, void *ctx)
{
    struct bar *b = ctx;
    if (!b->on || total == 0)
        return;
    int pct = (int)(done * 100 / total);
    if (pct == b->last)
        return;
    b->last = pct;
    char bar[41];
    int fill = pct * 40 / 100;
    memset(bar, '#', (size_t)fill);
    memset(bar + fill, ' ', (size_t)(40 - fill));
    bar[40] = 0;
    fprintf(stderr, "\r%s [%s] %3d%% %" PRIu64 "/%" PRIu64 " MiB", b->what, bar, pct, done >> 20,
            total >> 20);
    if (done >= total)
        fputc('\n', stderr);
    fflush(stderr);
}

static struct bar make_bar(const struct cli *c, const char *what)
{
    struct bar b = {.on = !c->quiet && !c->json && isatty(STDERR_FILENO), .last = -1, .what = what};
    return b;
}

/* ---- helpers ------------------------------------------------------------------------------ */

static int fail(const char *what, int err)
{
    fprintf(stderr, "vdictl image: %s: %s\n", what, vdi_strerror(err));
    return 1;
}

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    puts(s);
    free(s);
    json_decref(j);
}

static const char *human(uint64_t n, char buf[32])
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    snprintf(buf, 32, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
    return buf;
}

/* "NAME" or "NAME@V" */
static int parse_ref(const char *s, char **name, uint32_t *v)
{
    const char *at = strchr(s, '@');
    *v = 0;
    if (!at) {
        *name = vdi_xstrdup(s);
        return 0;
    }
    uint64_t x;
    if (vdi_parse_u64(at + 1, 1, UINT32_MAX, &x) < 0) {
        fprintf(stderr, "vdictl image: '%s': bad version after '@'\n", s);
        return -EINVAL;
    }
    *name = vdi_xmalloc((size_t)(at - s) + 1);
    memcpy(*name, s, (size_t)(at - s));
    (*name)[at - s] = 0;
    *v = (uint32_t)x;
    return 0;
}

static int need(const struct cli *c, int n, const char *cmd)
{
    if (c->nargs != n) {
        fprintf(stderr, "vdictl image %s: expected %d argument%s (see vdictl image --help)\n", cmd,
                n, n == 1 ? "" : "s");
        return 2;
    }
    return 0;
}

static int open_cat(const struct cli *c, img_catalog_t **cat)
{
    int err = img_catalog_open(c->state, cat);
    if (err < 0)
        return fail(c->state, err);
    return 0;
}

/* ---- file-level commands ------------------------------------------------------------------ */

static int cmd_create(struct cli *c)
{
    if (c->nargs < 1 || c->nargs > 2)
        return need(c, 2, "create");
    struct img_create_opts o = {.format = c->format,
                                .cluster_size = c->cluster_size,
                                .backing = c->backing,
                                .backing_fmt = c->backing_fmt};
    if (c->nargs == 2 && vdi_parse_size(c->args[1], 0, UINT64_MAX, &o.size) < 0) {
        fprintf(stderr, "vdictl image create: bad size '%s'\n", c->args[1]);
        return 2;
    }
    if (c->nargs == 1 && !c->backing) {
        fprintf(stderr, "vdictl image create: a size is needed without a backing file\n");
        return 2;
    }
    int err = img_create(c->args[0], &o);
    if (err < 0)
        return fail(c->args[0], err);
    if (c->json)
        print_json(json_pack("{s:s}", "created", c->args[0]));
    return 0;
}

static int cmd_file_info(struct cli *c, const char *path)
{
    struct img_info i;
    int err = img_info(path, &i);
    if (err < 0)
        return fail(path, err);
    if (c->json) {
        json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:I}", "file", path, "format", i.format,
                              "virtual_size", (json_int_t)i.virtual_size, "file_size",
                              (json_int_t)i.file_size, "disk_usage", (json_int_t)i.disk_usage);
        if (strcmp(i.format, "qcow2") == 0) {
            json_object_set_new(j, "cluster_size", json_integer(i.cluster_size));
            json_object_set_new(j, "qcow2_version", json_integer(i.version));
            json_object_set_new(j, "refcount_bits", json_integer(i.refcount_bits));
            json_object_set_new(j, "compression", json_string(i.compression));
            json_object_set_new(j, "dirty", json_boolean(i.dirty));
            json_object_set_new(j, "corrupt", json_boolean(i.corrupt));
            json_object_set_new(j, "backing", i.backing ? json_string(i.backing) : json_null());
            json_object_set_new(j, "backing_format",
                                i.backing_fmt ? json_string(i.backing_fmt) : json_null());
            json_object_set_new(j, "chain_depth", json_integer(i.chain_depth));
        }
        print_json(j);
    } else {
        char a[32], b[32], d[32];
        printf("file:          %s\nformat:        %s\nvirtual size:  %s (%" PRIu64
               " bytes)\nfile size:     %s\ndisk usage:    %s\n",
               path, i.format, human(i.virtual_size, a), i.virtual_size, human(i.file_size, b),
               human(i.disk_usage, d));
        if (strcmp(i.format, "qcow2") == 0) {
            printf("cluster size:  %u\nqcow2 version: %u\nrefcount bits: %u\ncompression:   "
                   "%s\n",
                   i.cluster_size, i.version, i.refcount_bits, i.compression);
            if (i.dirty || i.corrupt)
                printf("flags:        %s%s\n", i.dirty ? " dirty" : "",
                       i.corrupt ? " corrupt" : "");
            if (i.backing)
                printf("backing file:  %s (%s, %u below)\n", i.backing,
                       i.backing_fmt ? i.backing_fmt : "probed", i.chain_depth);
        }
    }
    img_info_free(&i);
    return 0;
}

static int cmd_check(struct cli *c)
{
    int rc = need(c, 1, "check");
    if (rc)
        return rc;
    struct img_check_result r;
    int err = img_check(c->args[0], c->repair, &r);
    if (err < 0)
        return fail(c->args[0], err);
    if (c->json) {
        print_json(json_pack(
            "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "file", c->args[0], "errors",
            (json_int_t)r.errors, "errors_fixed", (json_int_t)r.errors_fixed, "errors_left",
            (json_int_t)r.errors_left, "leaks", (json_int_t)r.leaks, "leaks_fixed",
            (json_int_t)r.leaks_fixed, "leaks_left", (json_int_t)r.leaks_left, "allocated_clusters",
            (json_int_t)r.allocated, "compressed_clusters", (json_int_t)r.compressed));
    } else {
        if (!r.errors && !r.leaks)
            printf("%s: no errors, no leaks (%" PRIu64 " clusters allocated, %" PRIu64
                   " compressed)\n",
                   c->args[0], r.allocated, r.compressed);
        else
            printf("%s: %" PRIu64 " errors (%" PRIu64 " fixed), %" PRIu64
                   " leaked clusters (%" PRIu64 " fixed)\n",
                   c->args[0], r.errors, r.errors_fixed, r.leaks, r.leaks_fixed);
    }
    return r.errors_left ? 2 : r.leaks_left ? 3 : 0;
}

static int cmd_commit(struct cli *c)
{
    int rc = need(c, 1, "commit");
    if (rc)
        return rc;
    struct bar b = make_bar(c, "commit");
    int err = img_commit(c->args[0], progress, &b);
    if (err < 0)
        return fail(c->args[0], err);
    if (!c->quiet && !c->json)
        printf("%s: committed into its backing file\n", c->args[0]);
    return 0;
}

static int cmd_rebase(struct cli *c)
{
    int rc = need(c, 1, "rebase");
    if (rc)
        return rc;
    if (!c->backing_set) {
        fprintf(stderr, "vdictl image rebase: -b BACKING is required ('' for none)\n");
        return 2;
    }
    struct bar b = make_bar(c, "rebase");
    const char *bk = c->backing && *c->backing ? c->backing : NULL;
    int err = img_rebase(c->args[0], bk, c->backing_fmt, c->unsafe, progress, &b);
    if (err < 0)
        return fail(c->args[0], err);
    return 0;
}

static int cmd_convert(struct cli *c)
{
    int rc = need(c, 2, "convert");
    if (rc)
        return rc;
    struct bar b = make_bar(c, "convert");
    struct img_convert_opts o = {.format = c->format,
                                 .cluster_size = c->cluster_size,
                                 .allow_backing_outside = c->allow_backing_outside,
                                 .overwrite = c->force,
                                 .progress = progress,
                                 .ctx = &b};
    int err = img_convert(c->args[0], c->args[1], &o);
    if (err == -EPERM) {
        fprintf(stderr,
                "vdictl image convert: %s: a backing file lies outside its directory (see the "
                "message above); check it, then pass --allow-backing-outside to follow it\n",
                c->args[0]);
        return 1;
    }
    if (err == -EEXIST) {
        fprintf(stderr,
                "vdictl image convert: %s already exists; nothing was written (pass --force to "
                "overwrite it)\n",
                c->args[1]);
        return 1;
    }
    if (err < 0)
        return fail(c->args[1], err);
    return 0;
}

/* ---- catalogue commands ------------------------------------------------------------------- */

static int cmd_list(struct cli *c)
{
    img_catalog_t *cat;
    int rc = need(c, 0, "list");
    if (rc || (rc = open_cat(c, &cat)))
        return rc;
    char **names;
    size_t n;
    int err = img_catalog_list(cat, &names, &n);
    if (err < 0) {
        img_catalog_close(cat);
        return fail("list", err);
    }
    json_t *arr = json_array();
    if (!c->json)
        printf("%-24s %-8s %s\n", "IMAGE", "CURRENT", "VERSIONS");
    for (size_t i = 0; i < n; i++) {
        uint32_t *vs = NULL, cur = 0;
        size_t nv = 0;
        img_catalog_versions(cat, names[i], &vs, &nv);
        img_catalog_current(cat, names[i], &cur);
        json_t *jv = json_array();
        vdi_buf_t line = VDI_BUF_INIT;
        for (size_t k = 0; k < nv; k++) {
            json_array_append_new(jv, json_integer(vs[k]));
            vdi_buf_printf(&line, "%s%u", k ? "," : "", vs[k]);
        }
        if (c->json)
            json_array_append_new(arr, json_pack("{s:s, s:i, s:o}", "name", names[i], "current",
                                                 (int)cur, "versions", jv));
        else {
            printf("%-24s %-8u %s\n", names[i], cur, line.data ? (char *)line.data : "");
            json_decref(jv);
        }
        vdi_buf_free(&line);
        free(vs);
        free(names[i]);
    }
    free(names);
    if (c->json)
        print_json(arr);
    else
        json_decref(arr);
    img_catalog_close(cat);
    return 0;
}

static int cmd_import(struct cli *c, bool publish)
{
    img_catalog_t *cat;
    int rc = need(c, 2, publish ? "publish" : "import");
    if (rc || (rc = open_cat(c, &cat)))
        return rc;
    struct bar b = make_bar(c, "import");
    struct img_import_opts o = {.disk = c->args[1],
                                .kernel = c->kernel,
                                .initrd = c->initrd,
                                .cmdline = c->cmdline,
                                .notes = c->notes,
                                .cluster_size = c->cluster_size,
                                .make_current = c->current,
                                .progress = progress,
                                .ctx = &b};
    uint32_t v;
    int err = publish ? img_catalog_publish(cat, c->args[0], c->args[1], &o, &v)
                      : img_catalog_import(cat, c->args[0], &o, &v);
    img_catalog_close(cat);
    if (err < 0)
        return fail(c->args[0], err);
    if (c->json)
        print_json(json_pack("{s:s, s:i}", "image", c->args[0], "version", (int)v));
    else if (!c->quiet)
        printf("%s: version %u %s\n", c->args[0], v, publish ? "published" : "imported");
    return 0;
}

static int cmd_show(struct cli *c, const char *ref)
{
    img_catalog_t *cat;
    char *name;
    uint32_t v, cur = 0;
    int rc = open_cat(c, &cat);
    if (rc)
        return rc;
    if (parse_ref(ref, &name, &v) < 0) {
        img_catalog_close(cat);
        return 2;
    }
    char *text = NULL;
    int err = img_catalog_manifest(cat, name, v, &text);
    json_t *m = NULL;
    if (err == 0) {
        m = json_loads(text, 0, NULL);
        if (!m)
            err = VDI_ECORRUPT;
    }
    size_t desktops = 0, children = 0;
    if (err == 0) {
        v = (uint32_t)json_integer_value(json_object_get(m, "version"));
        err = img_catalog_users(cat, name, v, &desktops, &children);
        img_catalog_current(cat, name, &cur);
    }
    if (err < 0) {
        free(text);
        free(name);
        json_decref(m);
        img_catalog_close(cat);
        return fail(ref, err);
    }
    json_object_set_new(m, "current", json_boolean(cur == v));
    json_object_set_new(m, "desktops", json_integer((json_int_t)desktops));
    json_object_set_new(m, "later_versions", json_integer((json_int_t)children));
    char *disk = NULL;
    if (img_catalog_path(cat, name, v, "disk.qcow2", &disk) == 0)
        json_object_set_new(m, "disk", json_string(disk));
    if (c->json) {
        print_json(m);
    } else {
        char a[32];
        json_t *parent = json_object_get(m, "parent");
        printf("image:         %s\nversion:       %u%s\ncreated:       %s\nvirtual size:  "
               "%s\n",
               name, v, cur == v ? " (current)" : "",
               json_string_value(json_object_get(m, "created")),
               human((uint64_t)json_integer_value(json_object_get(m, "virtual_size")), a));
        if (json_is_integer(parent))
            printf("parent:        %lld (disk is an overlay on it)\n",
                   (long long)json_integer_value(parent));
        printf("disk:          %s\nused by:       %zu desktops, %zu later versions\n",
               disk ? disk : "?", desktops, children);
        const char *cl = json_string_value(json_object_get(m, "cmdline"));
        if (cl)
            printf("cmdline:       %s\n", cl);
        const char *notes = json_string_value(json_object_get(m, "notes"));
        if (notes && *notes)
            printf("notes:         %s\n", notes);
        const char *fname;
        json_t *f;
        json_object_foreach(json_object_get(m, "files"), fname, f)
        {
            printf("  %-12s sha256 %s  %s\n", fname,
                   json_string_value(json_object_get(f, "sha256")),
                   human((uint64_t)json_integer_value(json_object_get(f, "size")), a));
        }
        json_decref(m);
    }
    free(disk);
    free(text);
    free(name);
    img_catalog_close(cat);
    return 0;
}

static int parse_version(const char *s, uint32_t *v)
{
    uint64_t x;
    if (vdi_parse_u64(s, 1, UINT32_MAX, &x) < 0) {
        fprintf(stderr, "vdictl image: '%s' is not a version number\n", s);
        return 2;
    }
    *v = (uint32_t)x;
    return 0;
}

static int cmd_set_current(struct cli *c, bool remove)
{
    img_catalog_t *cat;
    uint32_t v;
    int rc = need(c, 2, remove ? "remove" : "set-current");
    if (rc || (rc = parse_version(c->args[1], &v)) || (rc = open_cat(c, &cat)))
        return rc;
    int err = remove ? img_catalog_remove(cat, c->args[0], v)
                     : img_catalog_set_current(cat, c->args[0], v);
    img_catalog_close(cat);
    if (err < 0)
        return fail(c->args[0], err);
    if (!c->quiet && !c->json)
        printf("%s: version %u %s\n", c->args[0], v, remove ? "removed" : "is current");
    if (c->json)
        print_json(json_pack("{s:s, s:i, s:b}", "image", c->args[0], "version", (int)v,
                             remove ? "removed" : "current", 1));
    return 0;
}

static int cmd_clone(struct cli *c)
{
    img_catalog_t *cat;
    char *name;
    uint32_t v, used;
    int rc = need(c, 2, "clone");
    if (rc || (rc = open_cat(c, &cat)))
        return rc;
    if (parse_ref(c->args[0], &name, &v) < 0) {
        img_catalog_close(cat);
        return 2;
    }
    int err = img_catalog_clone(cat, name, v, c->args[1], c->holder, &used);
    img_catalog_close(cat);
    if (err < 0) {
        free(name);
        return fail(c->args[1], err);
    }
    if (c->json)
        print_json(
            json_pack("{s:s, s:s, s:i}", "clone", c->args[1], "image", name, "version", (int)used));
    else if (!c->quiet)
        printf("%s: overlay on %s version %u\n", c->args[1], name, used);
    free(name);
    return 0;
}

static int cmd_verify(struct cli *c)
{
    img_catalog_t *cat;
    char *name;
    uint32_t v;
    int rc = need(c, 1, "verify");
    if (rc || (rc = open_cat(c, &cat)))
        return rc;
    if (parse_ref(c->args[0], &name, &v) < 0) {
        img_catalog_close(cat);
        return 2;
    }
    uint32_t *vs = NULL;
    size_t n = 0;
    int err = 0, bad = 0;
    if (v) {
        vs = vdi_xmalloc(sizeof(*vs));
        vs[0] = v;
        n = 1;
    } else {
        err = img_catalog_versions(cat, name, &vs, &n); /* no version: all of them */
    }
    json_t *arr = json_array();
    for (size_t i = 0; err == 0 && i < n; i++) {
        int e = img_catalog_verify(cat, name, vs[i]);
        if (e < 0 && e != VDI_ECORRUPT) {
            err = e;
            break;
        }
        bad += e < 0;
        if (c->json)
            json_array_append_new(arr,
                                  json_pack("{s:i, s:b}", "version", (int)vs[i], "ok", e == 0));
        else
            printf("%s version %u: %s\n", name, vs[i], e == 0 ? "ok" : "CORRUPT");
    }
    free(vs);
    img_catalog_close(cat);
    if (c->json)
        print_json(arr);
    else
        json_decref(arr);
    if (err < 0) {
        free(name);
        return fail(c->args[0], err);
    }
    free(name);
    return bad ? 1 : 0;
}

/* ---- entry -------------------------------------------------------------------------------- */

int img_cli_main(int argc, char **argv)
{
    enum {
        O_JSON = 256,
        O_STATE,
        O_KERNEL,
        O_INITRD,
        O_CMDLINE,
        O_NOTES,
        O_CURRENT,
        O_HOLDER,
        O_ALLOW_BACKING_OUTSIDE,
        O_FORCE
    };
    static const struct option opts[] = {
        {"json", no_argument, NULL, O_JSON},
        {"state", required_argument, NULL, O_STATE},
        {"format", required_argument, NULL, 'f'},
        {"output-format", required_argument, NULL, 'O'},
        {"backing", required_argument, NULL, 'b'},
        {"backing-format", required_argument, NULL, 'F'},
        {"cluster-size", required_argument, NULL, 'c'},
        {"repair", no_argument, NULL, 'r'},
        {"unsafe", no_argument, NULL, 'u'},
        {"quiet", no_argument, NULL, 'q'},
        {"kernel", required_argument, NULL, O_KERNEL},
        {"initrd", required_argument, NULL, O_INITRD},
        {"cmdline", required_argument, NULL, O_CMDLINE},
        {"notes", required_argument, NULL, O_NOTES},
        {"current", no_argument, NULL, O_CURRENT},
        {"holder", required_argument, NULL, O_HOLDER},
        {"allow-backing-outside", no_argument, NULL, O_ALLOW_BACKING_OUTSIDE},
        {"force", no_argument, NULL, O_FORCE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct cli c = {.state = getenv("VDI_STATE_DIR")};
    int o;
    if (!c.state || !*c.state)
        c.state = "/var/lib/vdi";
    while ((o = getopt_long(argc, argv, "f:O:b:F:c:ruqh", opts, NULL)) != -1) {
        uint64_t x;
        switch (o) {
        case O_JSON:
            c.json = true;
            break;
        case O_STATE:
            c.state = optarg;
            break;
        case 'f':
        case 'O':
            c.format = optarg;
            break;
        case 'b':
            c.backing = optarg;
            c.backing_set = true;
            break;
        case 'F':
            c.backing_fmt = optarg;
            break;
        case 'c':
            if (vdi_parse_size(optarg, 4096, 2u << 20, &x) < 0) {
                fprintf(stderr, "vdictl image: bad cluster size '%s' (4K..2M)\n", optarg);
                return 2;
            }
            c.cluster_size = (uint32_t)x;
            break;
        case 'r':
            c.repair = true;
            break;
        case 'u':
            c.unsafe = true;
            break;
        case 'q':
            c.quiet = true;
            break;
        case O_KERNEL:
            c.kernel = optarg;
            break;
        case O_INITRD:
            c.initrd = optarg;
            break;
        case O_CMDLINE:
            c.cmdline = optarg;
            break;
        case O_NOTES:
            c.notes = optarg;
            break;
        case O_CURRENT:
            c.current = true;
            break;
        case O_HOLDER:
            c.holder = optarg;
            break;
        case O_FORCE:
            c.force = true;
            break;
        case O_ALLOW_BACKING_OUTSIDE:
            c.allow_backing_outside = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[optind];
    c.args = argv + optind + 1;
    c.nargs = argc - optind - 1;
    if (strcmp(cmd, "create") == 0)
        return cmd_create(&c);
    if (strcmp(cmd, "info") == 0 || strcmp(cmd, "show") == 0) {
        int rc = need(&c, 1, cmd);
        if (rc)
            return rc;
        struct stat st;
        /* `info` takes a file, or a catalogue image when no such file exists. */
        if (strcmp(cmd, "info") == 0 && stat(c.args[0], &st) == 0)
            return cmd_file_info(&c, c.args[0]);
        return cmd_show(&c, c.args[0]);
    }
    if (strcmp(cmd, "check") == 0)
        return cmd_check(&c);
    if (strcmp(cmd, "commit") == 0)
        return cmd_commit(&c);
    if (strcmp(cmd, "rebase") == 0)
        return cmd_rebase(&c);
    if (strcmp(cmd, "convert") == 0)
        return cmd_convert(&c);
    if (strcmp(cmd, "list") == 0)
        return cmd_list(&c);
    if (strcmp(cmd, "import") == 0)
        return cmd_import(&c, false);
    if (strcmp(cmd, "publish") == 0)
        return cmd_import(&c, true);
    if (strcmp(cmd, "set-current") == 0)
        return cmd_set_current(&c, false);
    if (strcmp(cmd, "remove") == 0)
        return cmd_set_current(&c, true);
    if (strcmp(cmd, "clone") == 0)
        return cmd_clone(&c);
    if (strcmp(cmd, "verify") == 0)
        return cmd_verify(&c);
    fprintf(stderr, "vdictl image: unknown command '%s' (see vdictl image --help)\n", cmd);
    return 2;
}
