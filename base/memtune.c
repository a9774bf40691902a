/*
 * memtune.c - the process's malloc policy (memtune.h).
 */
#include "base/memtune.h"

#include <stdlib.h> /* defines __GLIBC__ on glibc */

#if defined(__GLIBC__)
#include <malloc.h>
#endif

void memtune_apply(void)
{
#if defined(__GLIBC__)
    /* setting either turns glibc's moving thresholds off for both */
    (void)mallopt(M_MMAP_THRESHOLD, MEMTUNE_MMAP_THRESHOLD);
    (void)mallopt(M_TRIM_THRESHOLD, MEMTUNE_TRIM_THRESHOLD);
#endif
}
