import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';

/** Built binaries live here, outside the repo, shared by every checkout. */
export function cacheDir(): string {
  const base = process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache');
  return join(base, 'rowcast');
}

/**
 * Throwaway state of one harness run. Under the system temp dir rather than the
 * cache because PostgreSQL runs as its own user and cannot enter /root.
 */
export function runDirPrefix(): string {
  return join(tmpdir(), 'rowcast-harness-');
}

export const goModulesDir = join(import.meta.dirname, 'go');
