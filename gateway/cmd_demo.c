/*
 * cmd_demo.c - `kadx demo`: run the whole pipeline locally and print the
 * leaderboard. Not built yet: this placeholder is replaced by the command's
 * real implementation; until then it says so and exits 2.
 */
#include "gateway/cli.h"

int cmd_demo(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: kadx demo [options]\n\nrun the whole pipeline locally "
               "and print the leaderboard.\n(not built yet)\n");
        return 0;
    }
    fprintf(stderr, "kadx demo: not built yet\n");
    return EXIT_USAGE;
}
