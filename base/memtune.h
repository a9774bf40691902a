/*
 * memtune.h - the process's malloc policy (glibc), set once at start by
 * every program that runs the journal: `kadx` and the benchmarks that
 * measure its stages alone, so that a stage and kadx are compared under
 * the same allocator.
 */
#ifndef KADX_BASE_MEMTUNE_H
#define KADX_BASE_MEMTUNE_H

/* Allocations below this come from malloc's heaps, not from mmap. */
#define MEMTUNE_MMAP_THRESHOLD (4 * 1024 * 1024)
/* Free memory at the top of a heap is given back past this. */
#define MEMTUNE_TRIM_THRESHOLD (8 * 1024 * 1024)

/*
 * Fixes glibc's mmap and trim thresholds (mallopt). Without it glibc moves
 * its mmap threshold up to the size of the last large block freed, so a
 * block of the same size (a batch's events, one per cut, all of one size
 * when batches are full) is mmap'd afresh each time and faulted in 4 KiB
 * at a time. Measured in base/README.md. Elsewhere than glibc: nothing.
 */
void memtune_apply(void);

#endif
