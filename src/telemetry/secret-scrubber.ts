const redacted = '[REDACTED]';

/** Field names whose values are secret whatever they hold. */
const secretFieldName = /pass(word|wd)?$|secret|token|kubeconfig|client-key|certificate-data|authorization|credential|private.?key|bearer/i;

/** Shorter values would redact ordinary words all over the logs. */
const minimumLength = 4;

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Removes registered secret values, in the forms they leak in (plain, base64,
 * base64url, URL-encoded), and the values of secret-looking fields, from
 * anything on its way to a log line, an event, a status or a span.
 */
export class SecretScrubber {
  private readonly values = new Set<string>();
  private pattern: RegExp | undefined;
  /** Set once V8 refuses the joined pattern as too large (long or many values); plain search and replace from then on. */
  private tooLargeForRegExp = false;

  /** Call as soon as a secret is read, before anything can print it. */
  register(secret: string): void {
    const forms = [
      secret,
      Buffer.from(secret).toString('base64'),
      Buffer.from(secret).toString('base64url'),
      encodeURIComponent(secret),
      // A value stored base64-encoded in a Secret leaks decoded too.
      ...(/^[A-Za-z0-9+/]+={0,2}$/.test(secret) && secret.length % 4 === 0 ? [Buffer.from(secret, 'base64').toString('utf8')] : []),
    ];
    let changed = false;
    // Without its padding too: base64 of a secret embedded in a longer text is padded differently.
    for (const form of forms.flatMap((f) => [f, f.replace(/=+$/, '')])) {
      if (form.length >= minimumLength && !this.values.has(form) && !form.includes('\uFFFD')) {
        this.values.add(form);
        changed = true;
      }
    }
    if (changed) {
      const alternatives = [...this.values].sort((a, b) => b.length - a.length).map(escapeRegExp);
      this.pattern = new RegExp(alternatives.join('|'), 'g');
    }
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
    for (const value of [...this.values].sort((a, b) => b.length - a.length)) out = out.split(value).join(redacted);
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
