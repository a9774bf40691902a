/*
 * emu.h - the small helpers every part of the emulators uses: the wall
 * clock in ms and in ticks, random bytes and v4 uuids, the calendar.
 * Any thread.
 */
#ifndef KADX_EMULATOR_EMU_H
#define KADX_EMULATOR_EMU_H

#include <stddef.h>
#include <stdint.h>

#define EMU_TICKS_PER_SEC 10000000LL

/* Wall clock in ms since 1970-01-01. */
uint64_t emu_now_ms(void);

/* Wall clock in 100 ns ticks since 1970-01-01 (the engine's datetime
 * unit). */
int64_t emu_now_ticks(void);

/* n random bytes (getrandom; should it ever fail, something unique
 * enough). */
void emu_random_bytes(unsigned char *p, size_t n);

/* A random (v4) uuid: 36 characters and a NUL. */
void emu_new_uuid(char out[37]);

/* Days since 1970-01-01 of a proleptic Gregorian date, and back (H.
 * Hinnant's algorithms; any year). */
int64_t emu_days_from_civil(int64_t y, unsigned m, unsigned d);
void emu_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d);

#endif
