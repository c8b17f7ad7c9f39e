/* server/vdid.c: the vdid daemon's entry point: options, logging, then the daemon itself. */
#define VDI_LOG_TAG "vdid"
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>

#include "common/vdi.h"
#include "server/internal.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: vdid [OPTION]...\n"
               "The vdi daemon: VNC/TLS gateway, connection broker and desktop supervisor.\n"
               "\n"
               "  -c, --config FILE     configuration file (default /etc/vdi/vdid.conf)\n"
               "      --check-config    check the configuration file and exit\n"
               "      --log-level LEVEL err, warn, info (default) or debug\n"
               "  -h, --help            show this help and exit\n"
               "  -V, --version         show the version and exit\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"log-level", required_argument, NULL, 'L'},
        {"check-config", no_argument, NULL, 'C'}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},      {NULL, 0, NULL, 0},
    };
    const char *config = "/etc/vdi/vdid.conf";
    bool check_only = false, level_set = false;
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
            level_set = true;
            break;
        }
        case 'C':
            check_only = true;
            break;
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
    if (getenv("VDI_LOG_LEVEL"))
        level_set = true;

    char err[512];
    brk_config_t *cfg = NULL;
    int rc = brk_config_load(config, &cfg, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "vdid: %s\n", err);
        return 1;
    }
    if (check_only) {
        rc = srv__net_check(cfg, err, sizeof(err));
        if (rc < 0) {
            fprintf(stderr, "vdid: %s: %s\n", config, err);
            brk_config_free(cfg);
            return 1;
        }
        printf("%s: ok (%zu pools)\n", config, cfg->n_pools);
        brk_config_free(cfg);
        return 0;
    }
    if (!level_set)
        vdi_log_set_level(cfg->log_level);
    /* A vanished admin client or viewer must not kill the daemon. */
    signal(SIGPIPE, SIG_IGN);

    srv_t s;
    uv_loop_t *loop = uv_default_loop();
    rc = srv__daemon_init(&s, loop, cfg, config);
    if (rc < 0)
        return 1;
    VDI_LOG_INFO("vdid %s starting: config=%s state_dir=%s run_dir=%s", VDI_VERSION, config,
                 s.cfg->state_dir, s.cfg->run_dir);
    rc = srv__daemon_run(&s);
    srv__daemon_fini(&s);
    uv_loop_close(loop);
    return rc < 0 ? 1 : 0;
}
