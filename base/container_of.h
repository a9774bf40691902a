/*
 * container_of.h - recovers the struct that embeds a member (the Linux
 * kernel's and libuv's idiom): a libuv handle or a list node embedded in
 * its owner hands callbacks a pointer to the member; this gives back the
 * owner.
 */
#ifndef KADX_BASE_CONTAINER_OF_H
#define KADX_BASE_CONTAINER_OF_H

#include <stddef.h>

#define container_of(ptr, type, member)                                        \
    ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
