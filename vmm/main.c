/* vmm/main.c: the vdi-vmm entry point: options, logging, then the virtual machine. */
#define VDI_LOG_TAG "vmm"
#include <getopt.h>
#include <stdlib.h>

#include "common/vdi.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: vdi-vmm [OPTION]...\n"
               "Run one desktop virtual machine on KVM and serve its display.\n"
               "\n"
               "      --log-level LEVEL err, warn, info (default) or debug\n"
               "  -h, --help            show this help and exit\n"
               "  -V, --version         show the version and exit\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"log-level", required_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int c;

    vdi_log_set_program("vdi-vmm");
    vdi_log_init_from_env();
    while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
        switch (c) {
        case 'L': {
            int level = vdi_log_parse_level(optarg);
            if (level < 0) {
                fprintf(stderr, "vdi-vmm: --log-level: '%s' is not err, warn, info or debug\n",
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
            vdi_print_version("vdi-vmm");
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    VDI_LOG_ERR("the virtual machine monitor is not part of this build yet; see the status table "
                "in README.md");
    return 1;
}
