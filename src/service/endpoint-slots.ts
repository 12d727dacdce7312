/**
 * Endpoint slots: every endpoint of every service gets a small integer (its
 * slot), and what the data path needs about it lives in typed arrays indexed
 * by slot: its IPv4 address, its service, whether it takes new connections,
 * and how many conntrack entries point at it.
 *
 * Why slots outlive endpoints
 *   A conntrack entry stores the slot it was balanced to. When the endpoint is
 *   removed from its service, TCP connections to it keep working (conntrack
 *   keeps their NAT mapping), so the slot cannot be handed to another endpoint
 *   yet: the connection's close would then decrement someone else's count. A
 *   removed slot is marked Removed and is freed only when its connection count
 *   drops to zero. So `conns` is both the leastConnections metric and the
 *   slot's reference count.
 *
 * States
 *   Free       on the free stack.
 *   Eligible   ready and not terminating: takes new connections.
 *   Standby    in the service but not ready, or terminating: keeps existing
 *              connections, gets no new ones.
 *   Removed    gone from its service; waits for its last connection.
 */
import { growF64, growI32, growU32, growU8 } from '../lib/flat-table'

export enum EndpointState { Free = 0, Eligible = 1, Standby = 2, Removed = 3 }

const INITIAL_SLOTS = 64

export class EndpointSlots {
  /** IPv4 address per slot (unsigned). */
  ip: Uint32Array
  /** Service id per slot. */
  svc: Int32Array
  /** Conntrack entries that point at the slot. */
  conns: Int32Array
  /** EndpointState per slot. */
  state: Uint8Array
  /** Connections ever balanced to the slot (a Float64 never wraps). */
  picked: Float64Array
  private free: Int32Array
  private freeTop = 0
  private highWater = 0
  private live = 0

  constructor() {
    this.ip = new Uint32Array(INITIAL_SLOTS)
    this.svc = new Int32Array(INITIAL_SLOTS)
    this.conns = new Int32Array(INITIAL_SLOTS)
    this.state = new Uint8Array(INITIAL_SLOTS)
    this.picked = new Float64Array(INITIAL_SLOTS)
    this.free = new Int32Array(INITIAL_SLOTS)
  }

  /** Slots not Free (Removed ones waiting for their last connection included). */
  get size(): number { return this.live }
  /** Every slot in use is below this. */
  get highWaterMark(): number { return this.highWater }

  /** Takes a slot for endpoint `ip` of service `svc`. */
  alloc(ip: number, svc: number, eligible: boolean): number {
    let slot: number
    if (this.freeTop > 0) {
      slot = this.free[--this.freeTop]
    } else {
      if (this.highWater === this.ip.length) this.grow(this.ip.length * 2)
      slot = this.highWater++
    }
    this.ip[slot] = ip >>> 0
    this.svc[slot] = svc
    this.conns[slot] = 0
    this.picked[slot] = 0
    this.state[slot] = eligible ? EndpointState.Eligible : EndpointState.Standby
    this.live++
    return slot
  }

  setEligible(slot: number, eligible: boolean): void {
    if (this.state[slot] === EndpointState.Free || this.state[slot] === EndpointState.Removed) return
    this.state[slot] = eligible ? EndpointState.Eligible : EndpointState.Standby
  }

  /**
   * The endpoint left its service: the slot is freed now if no connection
   * uses it, else when the last one closes (see `release`).
   */
  retire(slot: number): void {
    const s = this.state[slot]
    if (s === EndpointState.Free || s === EndpointState.Removed) return
    if (this.conns[slot] <= 0) this.freeSlot(slot)
    else this.state[slot] = EndpointState.Removed
  }

  /** A connection to the slot was created (hot path). */
  acquire(slot: number): void {
    this.conns[slot]++
    this.picked[slot]++
  }

  /** A connection to the slot is gone (hot path): frees a Removed slot at zero. */
  release(slot: number): void {
    const n = --this.conns[slot]
    if (n <= 0 && this.state[slot] === EndpointState.Removed) this.freeSlot(slot)
  }

  private freeSlot(slot: number): void {
    this.state[slot] = EndpointState.Free
    this.conns[slot] = 0
    this.svc[slot] = -1
    this.free[this.freeTop++] = slot
    this.live--
  }

  private grow(n: number): void {
    this.ip = growU32(this.ip, n)
    this.svc = growI32(this.svc, n)
    this.conns = growI32(this.conns, n)
    this.state = growU8(this.state, n)
    this.picked = growF64(this.picked, n)
    this.free = growI32(this.free, n)
  }
}
