/* server/vdictl.c: the admin command line. Each command group lives in its own table entry. */
#define VDI_LOG_TAG "vdictl"
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "common/vdi.h"
#include "golden-images/img.h"

struct vdictl_cmd {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
};

static const struct vdictl_cmd commands[] = {
    {"image", "golden images (catalogue) and disk image files", img_cli_main},
    {NULL, NULL, NULL},
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: vdictl [OPTION]... COMMAND [ARG]...\n"
               "Administer vdi: pools, desktops, sessions and golden images.\n"
               "\n"
               "  -h, --help      show this help and exit\n"
               "  -V, --version   show the version and exit\n"
               "\n"
               "Commands:\n");
    int n = 0;
    for (const struct vdictl_cmd *c = commands; c->name; c++, n++)
        fprintf(f, "  %-14s %s\n", c->name, c->summary);
    if (n == 0)
        fprintf(f, "  (none yet in this build; see the status table in README.md)\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int c;

    vdi_log_set_program("vdictl");
    vdi_log_init_from_env();
    /* '+': stop at the first non-option, so commands parse their own options. */
    while ((c = getopt_long(argc, argv, "+hV", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            vdi_print_version("vdictl");
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
    for (const struct vdictl_cmd *cmd = commands; cmd->name; cmd++)
        if (strcmp(cmd->name, argv[optind]) == 0) {
            int first = optind;
            optind = 0; /* GNU getopt: start afresh for the command's own options */
            return cmd->run(argc - first, argv + first);
        }
    fprintf(stderr, "vdictl: unknown command '%s' (see vdictl --help)\n", argv[optind]);
    return 2;
}
