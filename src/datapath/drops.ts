/**
 * Why the datapath dropped a frame. Every drop is counted in a Float64Array slot
 * indexed by this enum (metrics read the array when scraped); the data path never
 * throws and never logs per packet.
 */
export enum Drop {
  /** A header failed its bounds or format check. */
  Malformed,
  /** VXLAN without the I flag (RFC 7348 §5). */
  VxlanNoIFlag,
  /** VXLAN for a VNI no network uses. */
  UnknownVni,
  /** VXLAN from an address that is not a peer (learnPeers off). */
  UnknownPeer,
  /** A pod frame larger than the pod MTU. */
  Mtu,
  /** Source MAC/IP/ARP sender not the pod's own (port security). */
  Spoofed,
  /** Unicast from a tunnel to a MAC that is not local (no VTEP-to-VTEP forwarding). */
  NotLocal,
  /** Destination is the port the frame came from. */
  SamePort,
  /** A tx queue or scratch slab was full for this batch. */
  QueueFull,
  /** The device or socket would block (backpressure). */
  TxBackpressure,
  /** The device or socket refused the frame. */
  TxError,
  /** A routed frame (to the gateway MAC) with nowhere to go. */
  NoRoute,
  /** A partial checksum or segmentation request that cannot be honoured. */
  BadOffload,
  /** Flooded frames over the per-port storm limit. */
  Storm,
  /** A query to the cluster DNS server that it could not read or answer. */
  DnsInvalid,
}

export const DROP_COUNT = Drop.DnsInvalid + 1

export const DROP_NAMES: readonly string[] = [
  'malformed', 'vxlan_no_i_flag', 'unknown_vni', 'unknown_peer', 'mtu', 'spoofed', 'not_local', 'same_port',
  'queue_full', 'tx_backpressure', 'tx_error', 'no_route', 'bad_offload', 'storm', 'dns_invalid',
]
