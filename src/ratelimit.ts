// A token bucket on the injected clock: bounds unsigned replies and log lines about bad input under attack
// (the home agent's rejections, the mobile router's ignored messages).

/** `rate` tokens a second, bucket of `rate`. */
export class TokenBucket {
  private tokens: number;
  private at = Number.NEGATIVE_INFINITY;
  constructor(private readonly rate: number) {
    this.tokens = rate;
  }
  take(now: number): boolean {
    if (now > this.at) {
      this.tokens = Math.min(
        this.rate,
        this.tokens + (Number.isFinite(this.at) ? ((now - this.at) / 1000) * this.rate : this.rate),
      );
      this.at = now;
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
