/*
 * cmd_consume.c - `kadx consume`: print a Kafka topic's events as JSON lines.
 * Not built yet: this placeholder is replaced by the command's real
 * implementation; until then it says so and exits 2.
 */
#include "gateway/cli.h"

int cmd_consume(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: kadx consume [options]\n\nprint a Kafka topic's events "
               "as JSON lines.\n(not built yet)\n");
        return 0;
    }
    fprintf(stderr, "kadx consume: not built yet\n");
    return EXIT_USAGE;
}
