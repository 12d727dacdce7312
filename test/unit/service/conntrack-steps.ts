/**
 * Helpers for table-driven conntrack tests (not a test file itself): one
 * client -> VIP connection balanced to one backend, driven packet by packet.
 */
import { Conntrack, ConntrackOptions, CT_DIR_ORIG, CT_DIR_REPLY } from '../../../src/service/conntrack'
import { PROTO_TCP } from '../../../src/wire/ipv4'
import { ip } from './frames'

export const CLIENT = ip('10.244.1.10')
export const VIP = ip('10.96.0.10')
export const BACKEND = ip('10.244.2.20')
export const CPORT = 40000
export const VPORT = 80
export const BPORT = 8080

export interface Pkt { dir: 'o' | 'r'; flags: number; now?: number }

/** Sends a packet of the connection through lookup + update, as the service path does. Returns the conn id or -1. */
export function send(ct: Conntrack, p: Pkt, proto = PROTO_TCP, cport = CPORT): number {
  const now = p.now ?? 0
  const e = p.dir === 'o'
    ? ct.lookup(CLIENT, VIP, cport, VPORT, proto, now)
    : ct.lookup(BACKEND, CLIENT, BPORT, cport, proto, now)
  if (e < 0) return -1
  const c = ct.connOf(e)
  ct.update(c, p.dir === 'o' ? CT_DIR_ORIG : CT_DIR_REPLY, p.flags, now)
  return c
}

/** Creates the connection from its first (original-direction) packet. */
export function open(ct: Conntrack, flags: number, now = 0, proto = PROTO_TCP, cport = CPORT, ep = 0): number {
  return ct.create(CLIENT, VIP, cport, VPORT, proto, BACKEND, BPORT, CLIENT, 1, ep, flags, now)
}

export function newCt(opts: ConntrackOptions = {}): Conntrack {
  return new Conntrack({ maxConnections: 64, seed: 7, ...opts })
}
