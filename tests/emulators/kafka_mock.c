/*
 * kafka_mock.c - `kadx kafka-mock`: run librdkafka's mock Kafka cluster as a
 * process. Not built yet: this placeholder is replaced by the command's real
 * implementation; until then it says so and exits 2.
 */
#include "gateway/cli.h"

int cmd_kafka_mock(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: kadx kafka-mock [options]\n\nrun librdkafka's mock "
               "Kafka cluster as a process.\n(not built yet)\n");
        return 0;
    }
    fprintf(stderr, "kadx kafka-mock: not built yet\n");
    return EXIT_USAGE;
}
