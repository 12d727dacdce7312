/*
 * The Internet checksum over a byte range (RFC 1071), the native twin of
 * csumAdd in src/wire/checksum.ts, which stays the reference: a test checks
 * both give the same checksum over many generated buffers. Used for bulk data
 * (TSO segments, GRO verification), where the call costs less than the loop.
 *
 * RFC 1071 §2(B): the ones' complement sum is byte-order independent, so the
 * buffer is summed as little-endian 32-bit words in a 64-bit register and the
 * folded 16-bit result byte-swapped to the big-endian (network) sum.
 */
#include <stdint.h>
#include <string.h>

#include "csum.h"
#include "util.h"

static uint32_t fold64(uint64_t s) {
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffffu) + (s >> 16);
  s = (s & 0xffffu) + (s >> 16);
  s = (s & 0xffffu) + (s >> 16);
  return (uint32_t)s;
}

/* Big-endian ones' complement sum of [p, p+len), folded to 16 bits (not complemented). */
static uint32_t csum_be(const uint8_t *p, size_t len) {
  uint64_t s = 0;
  size_t i = 0;
  for (; i + 4 <= len; i += 4) {
    uint32_t w;
    memcpy(&w, p + i, 4);
    s += w;
  }
  uint32_t le = fold64(s);
  /* Back to network order: swap the bytes of the 16-bit little-endian sum. */
  uint32_t be = ((le & 0xff) << 8) | (le >> 8);
  for (; i + 2 <= len; i += 2) be += ((uint32_t)p[i] << 8) | p[i + 1];
  if (i < len) be += (uint32_t)p[i] << 8;
  return fold64(be);
}

uint32_t csum_be_sum(const uint8_t *p, size_t len) { return csum_be(p, len); }
uint32_t csum_fold64(uint64_t s) { return fold64(s); }

/* csumAdd(buf, off, len, sum) -> 16-bit accumulator, same contract as the TypeScript csumAdd. */
napi_value csum_add(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  uint8_t *buf;
  size_t buflen;
  uint32_t off, len;
  double sum;
  napi_valuetype t;
  if (!get_args(env, info, 4, argv)) return NULL;
  if (!get_u8_array(env, argv[0], "buf", &buf, &buflen) || !get_u32(env, argv[1], "off", &off) ||
      !get_u32(env, argv[2], "len", &len))
    return NULL;
  if (napi_typeof(env, argv[3], &t) != napi_ok || t != napi_number) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "sum must be a number");
    return NULL;
  }
  napi_get_value_double(env, argv[3], &sum);
  if ((size_t)off + len > buflen || !(sum >= 0 && sum <= 9007199254740992.0)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "off + len past the end of buf, or sum out of range");
    return NULL;
  }
  uint64_t acc = (uint64_t)csum_be(buf + off, len) + (uint64_t)sum;
  napi_value r;
  napi_create_uint32(env, fold64(acc), &r);
  return r;
}
