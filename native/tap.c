/*
 * TAP devices: create or attach (TUNSETIFF), persist, vnet header size, offloads,
 * and batched read/write of whole frames. One read()/write() per frame is the
 * kernel's interface for TAP; the batching here is about crossing into JS once
 * per batch, not once per frame.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <linux/bpf.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "batch.h"
#include "util.h"

#define TAP_FLAG_VNET_HDR 1
#define TAP_FLAG_MULTI_QUEUE 2

/* Opens /dev/net/tun and binds it to `name` (creating a TAP or attaching to a persistent one). */
static int open_tap(const char *name, uint32_t flags, struct ifreq *ifr, const char **syscall) {
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    *syscall = "open /dev/net/tun";
    return -errno;
  }
  memset(ifr, 0, sizeof *ifr);
  ifr->ifr_flags = IFF_TAP | IFF_NO_PI;
  if (flags & TAP_FLAG_VNET_HDR) ifr->ifr_flags |= IFF_VNET_HDR;
  if (flags & TAP_FLAG_MULTI_QUEUE) ifr->ifr_flags |= IFF_MULTI_QUEUE;
  memcpy(ifr->ifr_name, name, strlen(name));
  if (ioctl(fd, TUNSETIFF, ifr) < 0) {
    int err = errno;
    close(fd);
    *syscall = "ioctl TUNSETIFF";
    return -err;
  }
  return fd;
}

static napi_value fd_and_name(napi_env env, int fd, const char *name) {
  napi_value result, v;
  napi_create_array_with_length(env, 2, &result);
  napi_create_int32(env, fd, &v);
  napi_set_element(env, result, 0, v);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &v);
  napi_set_element(env, result, 1, v);
  return result;
}

/* tapOpen(name: string, flags: number) -> [fd, actualName] */
napi_value tap_open(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  char name[IFNAMSIZ];
  uint32_t flags;
  struct ifreq ifr;
  const char *sc = "";
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!get_string(env, argv[0], "name", name, sizeof name)) return NULL;
  if (!get_u32(env, argv[1], "flags", &flags)) return NULL;
  int fd = open_tap(name, flags, &ifr, &sc);
  if (fd < 0) {
    throw_errno(env, sc, -fd);
    return NULL;
  }
  return fd_and_name(env, fd, ifr.ifr_name);
}

/*
 * tapOpenInNetns(netnsPath, name, flags) -> [fd, actualName]: attaches to (or
 * creates) a TAP inside another network namespace. TUNSETIFF looks the name up
 * in the calling thread's namespace, so the thread enters the target namespace
 * for the open and returns at once; the fd keeps working from here.
 */
napi_value tap_open_in_netns(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  char path[512], name[IFNAMSIZ];
  uint32_t flags;
  struct ifreq ifr;
  const char *sc = "";
  if (!get_args(env, info, 3, argv)) return NULL;
  if (!get_string(env, argv[0], "netnsPath", path, sizeof path)) return NULL;
  if (!get_string(env, argv[1], "name", name, sizeof name)) return NULL;
  if (!get_u32(env, argv[2], "flags", &flags)) return NULL;
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) {
    throw_errno(env, "open /proc/thread-self/ns/net", errno);
    return NULL;
  }
  int target = open(path, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    int err = errno;
    close(self);
    throw_errno(env, "open netns", err);
    return NULL;
  }
  if (setns(target, CLONE_NEWNET) < 0) {
    int err = errno;
    close(self);
    close(target);
    throw_errno(env, "setns", err);
    return NULL;
  }
  int fd = open_tap(name, flags, &ifr, &sc);
  int back = setns(self, CLONE_NEWNET);
  close(self);
  close(target);
  if (back < 0) {
    /* Staying in the pod's namespace would misdirect everything that follows. */
    napi_fatal_error("tapOpenInNetns", NAPI_AUTO_LENGTH, "could not return to the agent's network namespace", NAPI_AUTO_LENGTH);
  }
  if (fd < 0) {
    throw_errno(env, sc, -fd);
    return NULL;
  }
  return fd_and_name(env, fd, ifr.ifr_name);
}

static napi_value ioctl_int(napi_env env, napi_callback_info info, unsigned long req, const char *what,
                            int by_pointer) {
  napi_value argv[MAX_ARGS];
  int32_t fd;
  uint32_t arg;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!get_i32(env, argv[0], "fd", &fd)) return NULL;
  if (!get_u32(env, argv[1], what, &arg)) return NULL;
  int rc;
  if (by_pointer) {
    int iv = (int)arg;
    rc = ioctl(fd, req, &iv);
  } else {
    rc = ioctl(fd, req, (unsigned long)arg);
  }
  if (rc < 0) {
    char sc[64];
    memcpy(sc, "ioctl ", 7);
    strncat(sc, what, sizeof sc - 8);
    throw_errno(env, sc, errno);
    return NULL;
  }
  return make_undefined(env);
}

/* tapSetPersist(fd, 0|1) */
napi_value tap_set_persist(napi_env env, napi_callback_info info) {
  return ioctl_int(env, info, TUNSETPERSIST, "TUNSETPERSIST", 0);
}

/* tapSetOffload(fd, TUN_F_* bits) */
napi_value tap_set_offload(napi_env env, napi_callback_info info) {
  return ioctl_int(env, info, TUNSETOFFLOAD, "TUNSETOFFLOAD", 0);
}

/* tapSetVnetHdrSize(fd, bytes) */
napi_value tap_set_vnet_hdr_size(napi_env env, napi_callback_info info) {
  return ioctl_int(env, info, TUNSETVNETHDRSZ, "TUNSETVNETHDRSZ", 1);
}

/* closeFd(fd) */
napi_value close_fd(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  int32_t fd;
  if (!get_args(env, info, 1, argv)) return NULL;
  if (!get_i32(env, argv[0], "fd", &fd)) return NULL;
  if (close(fd) < 0) {
    throw_errno(env, "close", errno);
    return NULL;
  }
  return make_undefined(env);
}

/*
 * tapSetSteering(fd, program): loads an eBPF socket-filter program (struct
 * bpf_insn entries, 8 bytes each, host byte order, built by the caller) and
 * makes it the multi-queue TAP's queue selector (TUNSETSTEERINGEBPF): for each
 * frame the device transmits (a frame the pod sends), the program's result
 * modulo the number of queues picks the queue, hence the fd that reads it. The
 * device keeps its own reference; the program fd is closed here.
 */
napi_value tap_set_steering(napi_env env, napi_callback_info info) {
  int32_t fd;
  uint8_t *prog;
  size_t count;
  if (!get_fd_and_program(env, info, &fd, &prog, &count)) return NULL;
  _Static_assert(sizeof(struct bpf_insn) == 8, "get_fd_and_program counts 8-byte instructions");
  static const char license[] = "GPL";
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
  attr.insn_cnt = (uint32_t)count;
  attr.insns = (uint64_t)(uintptr_t)prog;
  attr.license = (uint64_t)(uintptr_t)license;
  int pfd = (int)syscall(__NR_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
  if (pfd < 0) {
    throw_errno(env, "bpf BPF_PROG_LOAD", errno);
    return NULL;
  }
  int rc = ioctl(fd, TUNSETSTEERINGEBPF, &pfd);
  int err = errno;
  close(pfd);
  if (rc < 0) {
    throw_errno(env, "ioctl TUNSETSTEERINGEBPF", err);
    return NULL;
  }
  return make_undefined(env);
}

/* Reads frames until EAGAIN, `max` frames or, with a budget (> 0), `budget` bytes. */
int fd_read_batch(int fd, uint8_t *buf, uint32_t slot, uint32_t headroom, uint32_t *lens, uint32_t max,
                  uint32_t budget) {
  uint32_t n = 0;
  uint64_t bytes = 0;
  while (n < max && (budget == 0 || bytes < budget)) {
    ssize_t r = read(fd, buf + (size_t)n * slot + headroom, slot - headroom);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || n > 0) break;
      return -errno;
    }
    lens[n++] = (uint32_t)r;
    bytes += (uint64_t)r;
  }
  return (int)n;
}

/* Checks that `max` slots of `slot` bytes fit in a buffer of `buflen` bytes. */
int check_slots(napi_env env, size_t buflen, uint32_t slot, uint32_t headroom, size_t lenslen, uint32_t max) {
  if (slot == 0 || headroom >= slot || max == 0 || max > BATCH_MAX || lenslen < max ||
      (size_t)slot * max > buflen) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE",
                           "batch layout does not fit: need 0 < headroom < slotSize, 0 < max <= 256, "
                           "max*slotSize <= buffer length and lens.length >= max");
    return 0;
  }
  return 1;
}

/* readBatch(fd, buf, slotSize, headroom, lens, max) -> count */
napi_value read_batch(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  int32_t fd;
  uint8_t *buf;
  uint32_t *lens, slot, headroom, max;
  size_t buflen, lenslen;
  if (!get_args(env, info, 6, argv)) return NULL;
  if (!get_i32(env, argv[0], "fd", &fd) || !get_u8_array(env, argv[1], "buf", &buf, &buflen) ||
      !get_u32(env, argv[2], "slotSize", &slot) || !get_u32(env, argv[3], "headroom", &headroom) ||
      !get_u32_array(env, argv[4], "lens", &lens, &lenslen) || !get_u32(env, argv[5], "max", &max))
    return NULL;
  if (!check_slots(env, buflen, slot, headroom, lenslen, max)) return NULL;
  int n = fd_read_batch(fd, buf, slot, headroom, lens, max, 0);
  if (n < 0) {
    throw_errno(env, "read", -n);
    return NULL;
  }
  return make_i32(env, n);
}

/*
 * writeBatch(fd, buf, offs, lens, n, counters) -> frames written.
 * Stops at EAGAIN (backpressure: the rest are the caller's to drop and count);
 * a frame refused with another error is skipped. counters (Float64Array(3)):
 * [0] += frames not written because of EAGAIN, [1] += frames refused by an error,
 * [2] = last errno.
 */
napi_value write_batch(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  int32_t fd;
  uint8_t *buf;
  uint32_t *offs, *lens, n;
  double *counters;
  size_t buflen, offslen, lenslen, clen;
  if (!get_args(env, info, 6, argv)) return NULL;
  if (!get_i32(env, argv[0], "fd", &fd) || !get_u8_array(env, argv[1], "buf", &buf, &buflen) ||
      !get_u32_array(env, argv[2], "offs", &offs, &offslen) ||
      !get_u32_array(env, argv[3], "lens", &lens, &lenslen) || !get_u32(env, argv[4], "n", &n) ||
      !get_f64_array(env, argv[5], "counters", &counters, &clen))
    return NULL;
  if (n > offslen || n > lenslen || clen < 3) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "n exceeds offs/lens length, or counters shorter than 3");
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    if ((size_t)offs[i] + lens[i] > buflen) {
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "a frame's offset + length is past the end of buf");
      return NULL;
    }
  }
  uint32_t written = 0;
  for (uint32_t i = 0; i < n; i++) {
    ssize_t r;
    do r = write(fd, buf + offs[i], lens[i]);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
      counters[2] = errno;
      if (errno == EAGAIN) {
        counters[0] += n - i;
        break;
      }
      counters[1] += 1;
      continue;
    }
    written++;
  }
  return make_i32(env, (int32_t)written);
}
