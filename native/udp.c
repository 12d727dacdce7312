/*
 * Underlay UDP: one socket bound to the VTEP address, batched receive with
 * recvmmsg() (source address and GRO segment size per datagram) and batched send
 * with sendmmsg() to per-datagram destinations, each optionally a UDP GSO
 * super-datagram (UDP_SEGMENT cmsg) that the kernel splits into equal segments.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <linux/filter.h>
#include <sys/socket.h>
#include <unistd.h>

#include "batch.h"
#include "util.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

#define UDP_FLAG_REUSEPORT 1

int check_slots(napi_env env, size_t buflen, uint32_t slot, uint32_t headroom, size_t lenslen, uint32_t max);

/* udpOpen(addr u32 host order, port, flags) -> [fd, boundPort] */
napi_value udp_open(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS], result, v;
  uint32_t addr, port, flags;
  if (!get_args(env, info, 3, argv)) return NULL;
  if (!get_u32(env, argv[0], "addr", &addr) || !get_u32(env, argv[1], "port", &port) ||
      !get_u32(env, argv[2], "flags", &flags))
    return NULL;
  if (port > 65535) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "port must be 0..65535");
    return NULL;
  }
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw_errno(env, "socket", errno);
    return NULL;
  }
  int one = 1;
  if (flags & UDP_FLAG_REUSEPORT) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(addr);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    int err = errno;
    close(fd);
    throw_errno(env, "bind", err);
    return NULL;
  }
  socklen_t slen = sizeof sa;
  getsockname(fd, (struct sockaddr *)&sa, &slen);
  napi_create_array_with_length(env, 2, &result);
  napi_create_int32(env, fd, &v);
  napi_set_element(env, result, 0, v);
  napi_create_int32(env, ntohs(sa.sin_port), &v);
  napi_set_element(env, result, 1, v);
  return result;
}

/* udpSetOption(fd, name, value) -> true, or false when the kernel lacks the option (ENOPROTOOPT). */
napi_value udp_set_option(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS], r;
  int32_t fd;
  char name[32];
  uint32_t value;
  if (!get_args(env, info, 3, argv)) return NULL;
  if (!get_i32(env, argv[0], "fd", &fd) || !get_string(env, argv[1], "name", name, sizeof name) ||
      !get_u32(env, argv[2], "value", &value))
    return NULL;
  int level, opt, iv = (int)value;
  if (strcmp(name, "gro") == 0) level = SOL_UDP, opt = UDP_GRO;
  else if (strcmp(name, "gso") == 0) level = SOL_UDP, opt = UDP_SEGMENT;
  else if (strcmp(name, "nocheck") == 0) level = SOL_SOCKET, opt = SO_NO_CHECK;
  else if (strcmp(name, "rcvbuf") == 0) level = SOL_SOCKET, opt = SO_RCVBUFFORCE;
  else if (strcmp(name, "sndbuf") == 0) level = SOL_SOCKET, opt = SO_SNDBUFFORCE;
  else {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "option must be one of gro, gso, nocheck, rcvbuf, sndbuf");
    return NULL;
  }
  if (setsockopt(fd, level, opt, &iv, sizeof iv) < 0) {
    if (errno == ENOPROTOOPT || (errno == EPERM && level == SOL_SOCKET)) {
      napi_get_boolean(env, false, &r);
      return r;
    }
    throw_errno(env, "setsockopt", errno);
    return NULL;
  }
  napi_get_boolean(env, true, &r);
  return r;
}

/*
 * udpAttachSteering(fd, program): attaches a classic BPF program to the
 * SO_REUSEPORT group fd belongs to (SO_ATTACH_REUSEPORT_CBPF). program holds
 * struct sock_filter entries (8 bytes each: code u16, jt u8, jf u8, k u32, in
 * host byte order), built by the caller; the kernel runs it on each datagram with
 * offset 0 at the UDP payload, and its result picks the socket by the order the
 * sockets joined the group. The kernel verifies the program (EINVAL if unsafe).
 */
napi_value udp_attach_steering(napi_env env, napi_callback_info info) {
  int32_t fd;
  uint8_t *prog;
  size_t count;
  if (!get_fd_and_program(env, info, &fd, &prog, &count)) return NULL;
  _Static_assert(sizeof(struct sock_filter) == 8, "get_fd_and_program counts 8-byte instructions");
  /* Copied: the view's bytes need not be aligned for struct sock_filter. */
  struct sock_filter insns[BPF_MAXINSNS];
  memcpy(insns, prog, count * sizeof insns[0]);
  struct sock_fprog fprog = {.len = (unsigned short)count, .filter = insns};
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &fprog, sizeof fprog) < 0) {
    throw_errno(env, "setsockopt SO_ATTACH_REUSEPORT_CBPF", errno);
    return NULL;
  }
  return make_undefined(env);
}

/*
 * Reads up to `max` datagrams. With a byte budget (> 0) it reads in chunks and
 * stops once the datagrams read reach the budget: with UDP GRO one slot may hold
 * 64 KB, and a batch of 64 of those is milliseconds of work during which
 * everything else waits (a ping behind a bulk transfer). Each chunk is sized by
 * the budget left and a mean datagram size: for the first, *mean_hint (the last
 * batch's mean, updated here; 0 = unknown, read one); for later ones, this
 * batch's. So small datagrams still come in one system call, large ones one by one.
 */
static uint32_t rx_chunk(uint32_t budget, uint64_t bytes, uint64_t mean, uint32_t left) {
  if (mean == 0) return 1;
  uint64_t fit = (budget - bytes) / mean;
  return fit == 0 ? 1 : fit < left ? (uint32_t)fit : left;
}

int udp_recv_batch(int fd, uint8_t *buf, uint32_t slot, uint32_t headroom, uint32_t *lens,
                   uint32_t *meta, uint32_t max, uint32_t budget, uint32_t *mean_hint) {
  struct mmsghdr msgs[BATCH_MAX];
  struct iovec iov[BATCH_MAX];
  struct sockaddr_in from[BATCH_MAX];
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctrl[BATCH_MAX];
  for (uint32_t i = 0; i < max; i++) {
    iov[i].iov_base = buf + (size_t)i * slot + headroom;
    iov[i].iov_len = slot - headroom;
    memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = &from[i];
    msgs[i].msg_hdr.msg_namelen = sizeof from[i];
    msgs[i].msg_hdr.msg_control = ctrl[i].buf;
    msgs[i].msg_hdr.msg_controllen = sizeof ctrl[i].buf;
  }
  uint32_t got = 0, chunk = budget > 0 ? rx_chunk(budget, 0, mean_hint ? *mean_hint : 0, max) : max;
  uint64_t bytes = 0;
  while (got < max) {
    int r;
    do r = recvmmsg(fd, msgs + got, chunk, MSG_DONTWAIT, NULL);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
      if (got > 0 || errno == EAGAIN) break;
      return -errno;
    }
    for (int i = 0; i < r; i++) bytes += msgs[got + i].msg_len;
    got += (uint32_t)r;
    if ((uint32_t)r < chunk || budget == 0 || bytes >= budget) break;
    chunk = rx_chunk(budget, bytes, bytes / got, max - got);
  }
  if (mean_hint && got > 0) *mean_hint = (uint32_t)(bytes / got);
  int n = (int)got;
  for (int i = 0; i < n; i++) {
    lens[i] = msgs[i].msg_len;
    meta[3 * i] = ntohl(from[i].sin_addr.s_addr);
    meta[3 * i + 1] = ntohs(from[i].sin_port);
    meta[3 * i + 2] = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
      if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
        int seg;
        memcpy(&seg, CMSG_DATA(c), sizeof seg);
        meta[3 * i + 2] = (uint32_t)seg;
      }
    }
    /* A datagram cut short by the slot size is reported at full length by the kernel
     * only with MSG_TRUNC; mark it so the caller drops it as malformed. */
    if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) lens[i] = 0;
  }
  return n;
}

/* udpRecvBatch(fd, buf, slotSize, headroom, lens, meta, max) -> count */
napi_value udp_recv_batch_js(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  int32_t fd;
  uint8_t *buf;
  uint32_t *lens, *meta, slot, headroom, max;
  size_t buflen, lenslen, metalen;
  if (!get_args(env, info, 7, argv)) return NULL;
  if (!get_i32(env, argv[0], "fd", &fd) || !get_u8_array(env, argv[1], "buf", &buf, &buflen) ||
      !get_u32(env, argv[2], "slotSize", &slot) || !get_u32(env, argv[3], "headroom", &headroom) ||
      !get_u32_array(env, argv[4], "lens", &lens, &lenslen) ||
      !get_u32_array(env, argv[5], "meta", &meta, &metalen) || !get_u32(env, argv[6], "max", &max))
    return NULL;
  if (!check_slots(env, buflen, slot, headroom, lenslen, max)) return NULL;
  if (metalen < (size_t)max * 3) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "meta must hold 3 entries per slot");
    return NULL;
  }
  int n = udp_recv_batch(fd, buf, slot, headroom, lens, meta, max, 0, NULL);
  if (n < 0) {
    throw_errno(env, "recvmmsg", -n);
    return NULL;
  }
  return make_i32(env, n);
}

/*
 * udpSendBatch(fd, buf, offs, lens, dst, n, counters) -> datagrams sent.
 * dst (Uint32Array) holds 3 entries per datagram: IPv4 (host order), port, GSO
 * segment size (0 = plain datagram). Stops at EAGAIN; skips a datagram refused
 * with another error. counters as for writeBatch: [0] += not sent (EAGAIN),
 * [1] += refused, [2] = last errno.
 */
napi_value udp_send_batch(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  int32_t fd;
  uint8_t *buf;
  uint32_t *offs, *lens, *dst, n;
  double *counters;
  size_t buflen, offslen, lenslen, dstlen, clen;
  if (!get_args(env, info, 7, argv)) return NULL;
  if (!get_i32(env, argv[0], "fd", &fd) || !get_u8_array(env, argv[1], "buf", &buf, &buflen) ||
      !get_u32_array(env, argv[2], "offs", &offs, &offslen) ||
      !get_u32_array(env, argv[3], "lens", &lens, &lenslen) ||
      !get_u32_array(env, argv[4], "dst", &dst, &dstlen) || !get_u32(env, argv[5], "n", &n) ||
      !get_f64_array(env, argv[6], "counters", &counters, &clen))
    return NULL;
  if (n > offslen || n > lenslen || (size_t)n * 3 > dstlen || clen < 3) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE",
                           "n exceeds offs/lens length or dst/3, or counters shorter than 3");
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    if ((size_t)offs[i] + lens[i] > buflen) {
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "a datagram's offset + length is past the end of buf");
      return NULL;
    }
  }
  struct mmsghdr msgs[BATCH_MAX];
  struct iovec iov[BATCH_MAX];
  struct sockaddr_in to[BATCH_MAX];
  union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
  } ctrl[BATCH_MAX];
  uint32_t sent = 0, done = 0;
  while (done < n) {
    uint32_t k = n - done < BATCH_MAX ? n - done : BATCH_MAX;
    for (uint32_t j = 0; j < k; j++) {
      uint32_t i = done + j;
      iov[j].iov_base = buf + offs[i];
      iov[j].iov_len = lens[i];
      memset(&to[j], 0, sizeof to[j]);
      to[j].sin_family = AF_INET;
      to[j].sin_addr.s_addr = htonl(dst[3 * i]);
      to[j].sin_port = htons((uint16_t)dst[3 * i + 1]);
      memset(&msgs[j].msg_hdr, 0, sizeof msgs[j].msg_hdr);
      msgs[j].msg_hdr.msg_name = &to[j];
      msgs[j].msg_hdr.msg_namelen = sizeof to[j];
      msgs[j].msg_hdr.msg_iov = &iov[j];
      msgs[j].msg_hdr.msg_iovlen = 1;
      uint32_t gso = dst[3 * i + 2];
      if (gso > 0 && gso < lens[i]) {
        struct cmsghdr *c;
        msgs[j].msg_hdr.msg_control = ctrl[j].buf;
        msgs[j].msg_hdr.msg_controllen = sizeof ctrl[j].buf;
        c = CMSG_FIRSTHDR(&msgs[j].msg_hdr);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t seg = (uint16_t)gso;
        memcpy(CMSG_DATA(c), &seg, sizeof seg);
      }
    }
    int r;
    do r = sendmmsg(fd, msgs, k, MSG_DONTWAIT);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
      counters[2] = errno;
      if (errno == EAGAIN) {
        counters[0] += n - done;
        break;
      }
      counters[1] += 1; /* the first datagram of this round was refused: skip it */
      done += 1;
      continue;
    }
    sent += (uint32_t)r;
    done += (uint32_t)r;
  }
  return make_i32(env, (int32_t)sent);
}
