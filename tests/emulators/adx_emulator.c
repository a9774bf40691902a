/*
 * adx_emulator.c - `kadx adx-emulator`: run the local Azure Data Explorer
 * emulator. Not built yet: this placeholder is replaced by the command's real
 * implementation; until then it says so and exits 2.
 */
#include "gateway/cli.h"

int cmd_adx_emulator(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: kadx adx-emulator [options]\n\nrun the local Azure Data "
               "Explorer emulator.\n(not built yet)\n");
        return 0;
    }
    fprintf(stderr, "kadx adx-emulator: not built yet\n");
    return EXIT_USAGE;
}
