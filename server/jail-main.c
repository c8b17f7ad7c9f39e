/* server/jail-main.c: vdi-jail, the program vdid starts for each desktop's VMM: it sets up the
 * VMM's jail and execs it (server/jail.c). It is small on purpose (libc and libseccomp), so a
 * desktop's start does not load vdid's libraries again; it is not meant to be run by hand.
 * Usage: vdi-jail --uid U --gid G [--kvm-gid K] --stage DIR [--seccomp kill|log] [--ro PATH]...
 *        [--rw PATH]... [--cgroup PROCS]... [--env NAME=VALUE]... -- PROGRAM [ARG]... */
#include "common/vdi.h"
#include "server/desktop-internal.h"

int main(int argc, char **argv)
{
    return srv__jail_main(argc, argv);
}
