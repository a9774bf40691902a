/*
 * emulators.h - the commands of the emulators library (emulators/): the
 * local ADX emulator and librdkafka's mock Kafka cluster. They are product
 * (`kadx demo` runs them from the one installed binary), registered by the
 * composition root (main.c) in its command table; nothing in gateway/,
 * storage/ or admin/ includes an emulator header. Each returns the process
 * exit code like the commands of cli.h (0, 1 run-time failure, 2 usage).
 */
#ifndef KADX_EMULATORS_H
#define KADX_EMULATORS_H

int cmd_adx_emulator(int argc, char **argv); /* emulators/adx_emulator.c */
int cmd_kafka_mock(int argc, char **argv);   /* emulators/kafka_mock.c */

#endif
