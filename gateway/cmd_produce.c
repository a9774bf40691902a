/*
 * cmd_produce.c - `kadx produce`: produce GamePlay events to a Kafka topic.
 * Not built yet: this placeholder is replaced by the command's real
 * implementation; until then it says so and exits 2.
 */
#include "gateway/cli.h"

int cmd_produce(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: kadx produce [options]\n\nproduce GamePlay events to a "
               "Kafka topic.\n(not built yet)\n");
        return 0;
    }
    fprintf(stderr, "kadx produce: not built yet\n");
    return EXIT_USAGE;
}
