/* Batched I/O cores shared by the synchronous calls and the pollers. No JS here. */
#ifndef TAPESTRY_BATCH_H
#define TAPESTRY_BATCH_H

#include <stddef.h>
#include <stdint.h>

/* Upper bound on one batch; mmsghdr arrays for UDP live on the stack at this size. */
#define BATCH_MAX 256

/*
 * Reads frames from a non-blocking fd until EAGAIN or `max` frames: frame i lands at
 * buf + i*slot + headroom, at most slot-headroom bytes, its length in lens[i].
 * Returns the count; on an error other than EAGAIN with nothing read, returns -errno.
 */
int fd_read_batch(int fd, uint8_t *buf, uint32_t slot, uint32_t headroom, uint32_t *lens, uint32_t max,
                  uint32_t budget);

/*
 * recvmmsg() into the same slot layout; meta[3*i] = source IPv4 (host order),
 * meta[3*i+1] = source port, meta[3*i+2] = GRO segment size (0 if not coalesced).
 */
int udp_recv_batch(int fd, uint8_t *buf, uint32_t slot, uint32_t headroom, uint32_t *lens,
                   uint32_t *meta, uint32_t max, uint32_t budget, uint32_t *mean_hint);

#endif
