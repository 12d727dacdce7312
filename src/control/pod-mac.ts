/**
 * The MAC a pod gets when its config sets none: stable across restarts and
 * hosts, so a pod keeps its MAC (and the peers' FDB and ARP entries stay
 * right) when the agent restarts or the pod moves.
 *
 * The first octet is 0x02: locally administered (U/L bit set) and unicast
 * (I/G bit clear), IEEE 802-2014 §8.2, so it cannot collide with a vendor
 * MAC. The other five octets are the low 40 bits of the 64-bit FNV-1a hash
 * of the name's UTF-8 bytes. Changing this function changes every pod's MAC
 * on upgrade: the test pins known values.
 */
import type { Mac } from '../wire/addr'

/** http://www.isthe.com/chongo/tech/comp/fnv/ : FNV-1a 64-bit offset basis and prime. */
const FNV64_OFFSET_BASIS = 0xcbf29ce484222325n
const FNV64_PRIME = 0x100000001b3n
const U64_MASK = 0xffffffffffffffffn

export function fnv1a64(bytes: Uint8Array): bigint {
  let h = FNV64_OFFSET_BASIS
  for (const b of bytes) h = ((h ^ BigInt(b)) * FNV64_PRIME) & U64_MASK
  return h
}

/** Locally administered, unicast first octet (binary 00000010). */
export const POD_MAC_FIRST_OCTET = 0x02

export function derivePodMac(name: string): Mac {
  const h = fnv1a64(Buffer.from(name, 'utf8'))
  return {
    hi: (POD_MAC_FIRST_OCTET << 8) | Number((h >> 32n) & 0xffn),
    lo: Number(h & 0xffffffffn),
  }
}
