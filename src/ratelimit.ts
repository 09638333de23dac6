// A token bucket on the injected clock: bounds unsigned replies and repeated log lines under attack
// (the home agent's rejections, the mobile router's ignored messages).

/** `rate` tokens every `perMs` milliseconds (default a second), bucket of `rate`. */
export class TokenBucket {
  private tokens: number;
  private at = Number.NEGATIVE_INFINITY;
  constructor(
    private readonly rate: number,
    private readonly perMs = 1000,
  ) {
    this.tokens = rate;
  }
  take(now: number): boolean {
    if (now > this.at) {
      this.tokens = Math.min(
        this.rate,
        this.tokens + (Number.isFinite(this.at) ? ((now - this.at) / this.perMs) * this.rate : this.rate),
      );
      this.at = now;
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
