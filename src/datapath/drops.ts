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
  /** ICMP errors for another worker over the hand-over bound (HANDOVER_PER_SECOND). */
  HandOverLimit,
}

export const DROP_COUNT = Drop.HandOverLimit + 1

export const DROP_NAMES: readonly string[] = [
  'malformed', 'vxlan_no_i_flag', 'unknown_vni', 'unknown_peer', 'mtu', 'spoofed', 'not_local', 'same_port',
  'queue_full', 'tx_backpressure', 'tx_error', 'no_route', 'bad_offload', 'storm', 'dns_invalid',
  'handover_limit',
]

/**
 * What the offloads did: how many packets went into how many large ones, so
 * their effect (and their absence: a pod whose TAP lacks USO, a socket without
 * GSO) can be seen. Counted per batch or per merge, not per byte.
 */
export enum Offload {
  /** TSO/USO super-frames from pods cut into segments for peers. */
  TsoFrames,
  /** The segments they made. */
  TsoSegments,
  /** UDP GSO runs of single datagrams sent to peers (Datapath.coalesce). */
  GsoRuns,
  /** The datagrams in those runs. */
  GsoRunDatagrams,
  /** TCP GRO merges written to pods (two segments or more). */
  GroTcpMerges,
  /** The segments in them. */
  GroTcpSegments,
  /** UDP GRO merges written to pods (two datagrams or more). */
  GroUdpMerges,
  /** The datagrams in them. */
  GroUdpDatagrams,
}

export const OFFLOAD_COUNT = Offload.GroUdpDatagrams + 1

export const OFFLOAD_NAMES: readonly string[] = [
  'tso_frames', 'tso_segments', 'gso_runs', 'gso_run_datagrams', 'gro_tcp_merges', 'gro_tcp_segments', 'gro_udp_merges', 'gro_udp_datagrams',
]
