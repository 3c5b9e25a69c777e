/** The most bytes a member's informers may hold at once, shared by all of them; they take before they keep and give back what they drop. */
export class HeldBytes {
  readonly limit: number;
  private held = 0;

  constructor(limit: number) {
    this.limit = limit;
  }

  get bytes(): number {
    return this.held;
  }

  /** Takes `bytes` (a negative count gives back); false, taking nothing, when that would pass the limit. */
  take(bytes: number): boolean {
    if (bytes > 0 && this.held + bytes > this.limit) return false;
    this.held = Math.max(0, this.held + bytes);
    return true;
  }
}

/** A member sent more than its informers may hold. Retryable: it clears when the member sends less, or when fewer kinds are watched there. */
export class OverHeldLimitError extends Error {
  override readonly name = 'OverHeldLimitError';

  constructor(what: string, limit: number) {
    super(`${what} would pass the ${Math.round(limit / 2 ** 20)} MiB this member's caches may hold (--member-cache-limit)`);
  }
}
