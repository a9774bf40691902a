/*
 * cmd_run.c - `kadx run`: run the gateway: Kafka -> journal -> ADX.
 * Not built yet: this placeholder is replaced by the command's real
 * implementation; until then it says so and exits 2.
 */
#include "gateway/cli.h"

int cmd_run(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: kadx run [options]\n\nrun the gateway: Kafka -> journal "
               "-> ADX.\n(not built yet)\n");
        return 0;
    }
    fprintf(stderr, "kadx run: not built yet\n");
    return EXIT_USAGE;
}
