/*
 * cmd_recover.c - `kadx recover`: inspect and repair a stopped gateway's
 * journal. Not built yet: this placeholder is replaced by the command's real
 * implementation; until then it says so and exits 2.
 */
#include "gateway/cli.h"

int cmd_recover(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: kadx recover [options]\n\ninspect and repair a stopped "
               "gateway's journal.\n(not built yet)\n");
        return 0;
    }
    fprintf(stderr, "kadx recover: not built yet\n");
    return EXIT_USAGE;
}
