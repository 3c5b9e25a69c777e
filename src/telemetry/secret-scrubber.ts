const redacted = '[REDACTED]';

/** Field names whose values are secret whatever they hold. */
const secretFieldName = /pass(word|wd)?$|secret|token|kubeconfig|client-key|certificate-data|authorization|credential|private.?key|bearer/i;

/** Shorter values would redact ordinary words all over the logs. */
const minimumLength = 4;

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The forms a secret leaks in (plain, base64, base64url, URL-encoded), each also without base64 padding, short ones left out. */
function formsOf(secret: string): string[] {
  const forms = [
    secret,
    Buffer.from(secret).toString('base64'),
    Buffer.from(secret).toString('base64url'),
    encodeURIComponent(secret),
    // A value stored base64-encoded in a Secret leaks decoded too.
    ...(/^[A-Za-z0-9+/]+={0,2}$/.test(secret) && secret.length % 4 === 0 ? [Buffer.from(secret, 'base64').toString('utf8')] : []),
  ];
  // Without its padding too: base64 of a secret embedded in a longer text is padded differently.
  return [...new Set(forms.flatMap((f) => [f, f.replace(/=+$/, '')]))].filter((form) => form.length >= minimumLength && !form.includes('\uFFFD'));
}

/**
 * Removes registered secret values, in the forms they leak in (plain, base64,
 * base64url, URL-encoded), and the values of secret-looking fields, from
 * anything on its way to a log line, an event, a status or a span.
 */
export class SecretScrubber {
  /** Each form to remove, with the sources (`secret:<ns>/<name>`) that registered it: a form goes when its last source forgets it. */
  private readonly values = new Map<string, Set<string>>();
  /** The plain values each source registered, so forgetting a source finds their forms. */
  private readonly sources = new Map<string, Set<string>>();
  private pattern: RegExp | undefined;
  /** Set once V8 refuses the joined pattern as too large (long or many values); plain search and replace from then on. */
  private tooLargeForRegExp = false;

  /** Call as soon as a secret is read, before anything can print it; `source` names where it was read (see forget). */
  register(secret: string, source: string): void {
    let changed = false;
    for (const form of formsOf(secret)) {
      const registeredBy = this.values.get(form);
      if (registeredBy === undefined) {
        this.values.set(form, new Set([source]));
        changed = true;
      } else {
        registeredBy.add(source);
      }
    }
    const plain = this.sources.get(source) ?? new Set<string>();
    plain.add(secret);
    this.sources.set(source, plain);
    if (changed) this.rebuild();
  }

  /**
   * Stops removing what `source` registered, except values `held` still holds
   * (whole or inside one: the replaced data of a Secret) and forms another
   * source registered too: a deleted or rewritten Secret's old values do not
   * stay in memory.
   */
  forget(source: string, held: readonly string[] = []): void {
    const plain = this.sources.get(source);
    if (plain === undefined) return;
    let changed = false;
    for (const secret of [...plain].filter((value) => !held.some((text) => text.includes(value)))) {
      plain.delete(secret);
      for (const form of formsOf(secret)) {
        const registeredBy = this.values.get(form);
        if (registeredBy === undefined) continue;
        // Another plain value of this same source can share a form (a value and its base64 encoding).
        if ([...plain].some((other) => formsOf(other).includes(form))) continue;
        registeredBy.delete(source);
        if (registeredBy.size === 0) {
          this.values.delete(form);
          changed = true;
        }
      }
    }
    if (plain.size === 0) this.sources.delete(source);
    if (changed) this.rebuild();
  }

  private rebuild(): void {
    const alternatives = [...this.values.keys()].sort((a, b) => b.length - a.length).map(escapeRegExp);
    this.pattern = alternatives.length === 0 ? undefined : new RegExp(alternatives.join('|'), 'g');
    this.tooLargeForRegExp = false;
  }

  scrub(text: string): string {
    if (this.pattern === undefined) return text;
    if (!this.tooLargeForRegExp) {
      try {
        return text.replace(this.pattern, redacted);
      } catch {
        // V8 compiles on first use: "regular expression too large" must not take the process down.
        this.tooLargeForRegExp = true;
      }
    }
    let out = text;
    for (const value of [...this.values.keys()].sort((a, b) => b.length - a.length)) out = out.split(value).join(redacted);
    return out;
  }

  /** One named value (a span attribute, say): redacted whole under a secret-looking name, else scrubbed. */
  scrubField(name: string, value: string): string {
    return secretFieldName.test(name) && value !== '' ? redacted : this.scrub(value);
  }

  /** A deep copy with secret fields redacted and every string scrubbed. */
  scrubValue(value: unknown, depth = 0): unknown {
    if (typeof value === 'string') return this.scrub(value);
    if (value === null || typeof value !== 'object' || depth > 8) return value;
    if (value instanceof Error) return this.scrubError(value);
    if (Array.isArray(value)) return value.map((item: unknown) => this.scrubValue(item, depth + 1));
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      out[key] = secretFieldName.test(key) && item !== undefined && item !== null && item !== '' ? redacted : this.scrubValue(item, depth + 1);
    }
    return out;
  }

  private scrubError(error: Error): Record<string, unknown> {
    const out: Record<string, unknown> = { name: error.name, message: this.scrub(error.message) };
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' || typeof code === 'number') out['code'] = code;
    if (error.cause !== undefined) out['cause'] = this.scrubValue(error.cause, 1);
    return out;
  }
}
