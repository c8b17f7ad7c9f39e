/* server/vdid.c: the vdid daemon's entry point: options, logging, then the daemon itself. */
#define VDI_LOG_TAG "vdid"
#include <getopt.h>
#include <stdlib.h>

#include "common/vdi.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: vdid [OPTION]...\n"
               "The vdi daemon: VNC/TLS gateway, connection broker and desktop supervisor.\n"
               "\n"
               "  -c, --config FILE     configuration file (default /etc/vdi/vdid.conf)\n"
               "      --log-level LEVEL err, warn, info (default) or debug\n"
               "  -h, --help            show this help and exit\n"
               "  -V, --version         show the version and exit\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"log-level", required_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *config = "/etc/vdi/vdid.conf";
    int c;

    vdi_log_set_program("vdid");
    vdi_log_init_from_env();
    while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'L': {
            int level = vdi_log_parse_level(optarg);
            if (level < 0) {
                fprintf(stderr, "vdid: --log-level: '%s' is not err, warn, info or debug\n",
                        optarg);
                return 2;
            }
            vdi_log_set_level(level);
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            vdi_print_version("vdid");
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vdid: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    VDI_LOG_ERR("config=%s: the broker and its listeners are not part of this build yet; "
                "see the status table in README.md",
                config);
    return 1;
}
