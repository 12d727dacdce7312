/**
 * A token bucket on the caller's clock (ms): take() spends one token if there
 * is one, after adding `rate` tokens per second since the last refill, up to
 * `burst`. Rate and burst are arguments, so a setting changed at run time
 * applies from the next call. No allocation: a field of a port or a datapath.
 */
export class TokenBucket {
  private tokens: number
  private refilledAt: number

  constructor(tokens: number, now: number) {
    this.tokens = tokens
    this.refilledAt = now
  }

  take(now: number, rate: number, burst: number): boolean {
    const refill = ((now - this.refilledAt) * rate) / 1000
    if (refill >= 1) {
      this.tokens = Math.min(burst, this.tokens + refill)
      this.refilledAt = now
    }
    if (this.tokens < 1) return false
    this.tokens -= 1
    return true
  }
}
