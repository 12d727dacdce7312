/**
 * Copying bytes between slabs without a view object per copy.
 *
 * `out.set(src.subarray(a, b), o)` makes a typed-array view (about 96 bytes of
 * heap) per call; on the hot path that is garbage per packet. When both slabs are
 * views of one ArrayBuffer (the datapath keeps its rx batches and its scratch slab
 * in one arena) and `src` does not start before `out`, the copy is
 * `out.copyWithin`, which allocates nothing. Other pairs fall back to set().
 */
export function copyInto(out: Uint8Array, o: number, src: Uint8Array, a: number, b: number): void {
  const rel = src.byteOffset - out.byteOffset
  if (src.buffer === out.buffer && rel >= 0 && rel + b <= out.length) out.copyWithin(o, rel + a, rel + b)
  else out.set(src.subarray(a, b), o)
}
