/*
 * Segmentation of GSO super-frames, the native twin of tsoSegment in
 * src/wire/tso.ts, which stays the reference: same arguments, same output
 * bytes, same return codes (a test checks both over many generated frames).
 * One call per super-frame instead of a copy and a checksum call per segment;
 * each segment's payload is checksummed right after it is copied, while it is
 * still in cache.
 */
#include <stdint.h>
#include <string.h>

#include "csum.h"
#include "util.h"

/* Malformed codes of src/wire/malformed.ts. */
#define M_TRUNCATED (-1)
#define M_BAD_HEADER_LENGTH (-3)
#define M_BAD_LENGTH (-8)

#define ETH_HLEN 14
#define TPID_VLAN 0x8100
#define TPID_QINQ 0x88a8

static inline uint32_t rd16(const uint8_t *p) { return ((uint32_t)p[0] << 8) | p[1]; }
static inline uint32_t rd32(const uint8_t *p) { return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]; }
static inline void wr16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }

/* ethCheck: header length with up to two tags, or a negative code. */
static int eth_check(const uint8_t *f, size_t len) {
  if (len < ETH_HLEN) return M_TRUNCATED;
  uint32_t t = rd16(f + 12);
  if (t != TPID_VLAN && t != TPID_QINQ) return ETH_HLEN;
  if (len < ETH_HLEN + 4) return M_TRUNCATED;
  t = rd16(f + 16);
  if (t != TPID_VLAN && t != TPID_QINQ) return ETH_HLEN + 4;
  if (len < ETH_HLEN + 8) return M_TRUNCATED;
  return ETH_HLEN + 8;
}

/*
 * tsoSegment(buf, frame, len, isUdp, gsoSize, out, outOff, prefix, maxSegments, info)
 * -> segments (> 0) or a Malformed code. info (Uint32Array of 5) receives
 * hdrLen, payloadLen, lastLen, l4Off, ethLen on success (the TSO record).
 */
napi_value tso_segment(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  uint8_t *buf, *out;
  size_t buflen, outlen, infolen;
  uint32_t *rec;
  int32_t frame, len, gso, outOff, prefix, maxSeg;
  int isUdp;
  if (!get_args(env, info, 10, argv)) return NULL;
  if (!get_u8_array(env, argv[0], "buf", &buf, &buflen) || !get_i32(env, argv[1], "frame", &frame) ||
      !get_i32(env, argv[2], "len", &len) || !get_bool(env, argv[3], "isUdp", &isUdp) ||
      !get_i32(env, argv[4], "gsoSize", &gso) || !get_u8_array(env, argv[5], "out", &out, &outlen) ||
      !get_i32(env, argv[6], "outOff", &outOff) || !get_i32(env, argv[7], "prefix", &prefix) ||
      !get_i32(env, argv[8], "maxSegments", &maxSeg) || !get_u32_array(env, argv[9], "info", &rec, &infolen))
    return NULL;
  if (infolen < 5 || outOff < 0 || prefix < 0) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "info needs 5 elements; outOff and prefix must be >= 0");
    return NULL;
  }
  if (frame < 0 || len < 0 || (int64_t)len > (int64_t)buflen - frame) return make_i32(env, M_TRUNCATED);
  const uint8_t *f = buf + frame;
  int eh = eth_check(f, (size_t)len);
  if (eh < 0) return make_i32(env, eh);
  uint32_t type = rd16(f + eh - 2);
  const uint8_t *l3 = f + eh;
  int v6 = 0, ipHl;
  uint8_t proto = isUdp ? 17 : 6;
  if (type == 0x0800) {
    if (len - eh < 20) return make_i32(env, M_TRUNCATED);
    ipHl = (l3[0] & 15) * 4;
    if ((l3[0] >> 4) != 4 || ipHl < 20) return make_i32(env, M_BAD_HEADER_LENGTH);
    if (l3[9] != proto) return make_i32(env, M_BAD_LENGTH);
  } else if (type == 0x86dd) {
    v6 = 1;
    ipHl = 40;
    if (len - eh < 40) return make_i32(env, M_TRUNCATED);
    if (l3[6] != proto) return make_i32(env, M_BAD_LENGTH);
  } else {
    return make_i32(env, M_BAD_LENGTH);
  }
  const uint8_t *l4 = l3 + ipHl;
  int l4Hl = 8;
  if (!isUdp) {
    if (eh + ipHl + 20 > len) return make_i32(env, M_TRUNCATED);
    l4Hl = (l4[12] >> 4) * 4;
    if (l4Hl < 20) return make_i32(env, M_BAD_HEADER_LENGTH);
  }
  int hdrLen = eh + ipHl + l4Hl;
  int payloadLen = len - hdrLen;
  if (payloadLen <= 0 || gso <= 0) return make_i32(env, M_BAD_LENGTH);
  int n = (payloadLen + gso - 1) / gso;
  if (n > maxSeg) return make_i32(env, M_BAD_LENGTH);
  int64_t stride = (int64_t)prefix + hdrLen + gso;
  if ((int64_t)outOff + (int64_t)(n - 1) * stride + prefix + hdrLen + (payloadLen - (int64_t)(n - 1) * gso) > (int64_t)outlen)
    return make_i32(env, M_BAD_LENGTH);

  uint8_t flags = isUdp ? 0 : l4[13];
  uint32_t seq0 = isUdp ? 0 : rd32(l4 + 4);
  uint32_t id0 = v6 ? 0 : rd16(l3 + 4);
  uint64_t pseudoAddr = 0;
  if (v6) pseudoAddr = csum_be_sum(l3 + 8, 32);
  else pseudoAddr = rd16(l3 + 12) + rd16(l3 + 14) + rd16(l3 + 16) + rd16(l3 + 18);
  for (int k = 0; k < n; k++) {
    int chunk = k == n - 1 ? payloadLen - k * gso : gso;
    uint8_t *o = out + outOff + (int64_t)k * stride + prefix;
    memmove(o, f, (size_t)hdrLen);
    memmove(o + hdrLen, f + hdrLen + (int64_t)k * gso, (size_t)chunk);
    uint8_t *ip = o + eh;
    uint8_t *l4o = ip + ipHl;
    int l4len = l4Hl + chunk;
    if (v6) {
      wr16(ip + 4, (uint32_t)l4len);
    } else {
      wr16(ip + 2, (uint32_t)(ipHl + l4len));
      wr16(ip + 4, (id0 + (uint32_t)k) & 0xffff);
      wr16(ip + 10, 0);
      wr16(ip + 10, ~csum_fold64(csum_be_sum(ip, (size_t)ipHl)) & 0xffff);
    }
    uint8_t *field;
    if (isUdp) {
      wr16(l4o + 4, (uint32_t)l4len);
      field = l4o + 6;
    } else {
      uint32_t seq = seq0 + (uint32_t)k * (uint32_t)gso;
      l4o[4] = (uint8_t)(seq >> 24); l4o[5] = (uint8_t)(seq >> 16); l4o[6] = (uint8_t)(seq >> 8); l4o[7] = (uint8_t)seq;
      uint8_t fl = flags;
      if (k != n - 1) fl &= (uint8_t)~(0x01 | 0x08); /* FIN, PSH */
      if (k != 0) fl &= (uint8_t)~0x80;             /* CWR */
      l4o[13] = fl;
      field = l4o + 16;
    }
    wr16(field, 0);
    uint64_t sum = pseudoAddr + proto + (uint32_t)(l4len & 0xffff) + (v6 ? (uint32_t)l4len >> 16 : 0);
    sum += csum_be_sum(l4o, (size_t)l4len);
    uint32_t c = ~csum_fold64(sum) & 0xffff;
    if (isUdp && c == 0) c = 0xffff;
    wr16(field, c);
  }
  rec[0] = (uint32_t)hdrLen;
  rec[1] = (uint32_t)payloadLen;
  rec[2] = (uint32_t)(hdrLen + payloadLen - (n - 1) * gso);
  rec[3] = (uint32_t)(eh + ipHl);
  rec[4] = (uint32_t)eh;
  return make_i32(env, n);
}
