import type { SecretScrubber } from '../telemetry/index.ts';

export interface SecretLike {
  metadata?: { name?: string; namespace?: string };
  data?: Record<string, string>;
}

export type SecretValues = { ok: true; values: Record<string, string> } | { ok: false; missing: string[] };

/**
 * Decodes the keys wanted from a Secret and registers every value with the
 * scrubber at once, before anything could print it.
 */
export function readSecretKeys(secret: SecretLike, keys: Record<string, string>, optional: ReadonlySet<string>, scrubber: SecretScrubber): SecretValues {
  const values: Record<string, string> = {};
  const missing: string[] = [];
  for (const [field, key] of Object.entries(keys)) {
    const encoded = secret.data?.[key];
    if (encoded === undefined) {
      if (!optional.has(field)) missing.push(key);
      continue;
    }
    const value = Buffer.from(encoded, 'base64').toString('utf8');
    if (field === 'password' || field === 'kubeconfig') scrubber.register(value, secretSource(secret.metadata?.namespace ?? '', secret.metadata?.name ?? ''));
    values[field] = value;
  }
  return missing.length > 0 ? { ok: false, missing } : { ok: true, values };
}

/** The scrubber source of a Secret's values, and of credentials found inside them (a kubeconfig's token). */
export function secretSource(namespace: string, name: string): string {
  return `secret:${namespace}/${name}`;
}

/**
 * A Secret deleted, or its data replaced: the scrubber stops holding the
 * values it no longer has (values another Secret registered stay). Readers
 * requeued by the same event register the new values again; a value still
 * held, whole or inside another (a kubeconfig's token), stays registered.
 */
export function forgetSecretValues(secret: SecretLike, deleted: boolean, scrubber: SecretScrubber): void {
  const held = deleted ? [] : Object.values(secret.data ?? {}).map((encoded) => Buffer.from(encoded, 'base64').toString('utf8'));
  scrubber.forget(secretSource(secret.metadata?.namespace ?? '', secret.metadata?.name ?? ''), held);
}
