/*
 * array.h - growing a plain C array by doubling.
 */
#ifndef KADX_BASE_ARRAY_H
#define KADX_BASE_ARRAY_H

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

/*
 * Grows *arr (elements of sz bytes, capacity *cap) to hold at least need
 * elements, doubling from 16. Returns 0, or -ENOMEM with *arr untouched.
 */
static inline int grow_array(void **arr, size_t *cap, size_t need, size_t sz)
{
    size_t ncap;
    void *p;

    if (need <= *cap) {
        return 0;
    }
    ncap = *cap ? *cap * 2 : 16;
    while (ncap < need) {
        ncap *= 2;
    }
    p = realloc(*arr, ncap * sz);
    if (p == NULL) {
        return -ENOMEM;
    }
    *arr = p;
    *cap = ncap;
    return 0;
}

#endif
