/* The Internet checksum helpers (csum.c) the other native byte transforms share. */
#ifndef TAPESTRY_CSUM_H
#define TAPESTRY_CSUM_H

#include <stddef.h>
#include <stdint.h>

/* Big-endian ones' complement sum of [p, p+len), folded to 16 bits (not complemented). */
uint32_t csum_be_sum(const uint8_t *p, size_t len);
/* A 64-bit ones' complement accumulator folded to 16 bits. */
uint32_t csum_fold64(uint64_t s);

#endif
