import { TemplateError } from './errors.ts';
import { compileTemplate, type CompiledTemplate } from './template.ts';

export interface TemplateCacheOptions {
  /** Entries kept; the least recently used goes first. Default 1000. */
  maxEntries?: number;
  /** Replaces compileTemplate, e.g. to count compilations. */
  compile?: (source: string) => CompiledTemplate;
}

type Entry = { source: string; template: CompiledTemplate } | { source: string; error: TemplateError };

/**
 * Compiled templates by key, e.g. `${dqr uid}/${generation}`: compiling costs
 * about a hundred renders, so it happens once per DQR generation. A template
 * that does not compile is remembered too and throws the same TemplateError
 * on every get, without compiling again.
 */
export class TemplateCache {
  readonly #entries = new Map<string, Entry>();
  readonly #maxEntries: number;
  readonly #compile: (source: string) => CompiledTemplate;
  #compilations = 0;

  constructor(options: TemplateCacheOptions = {}) {
    this.#maxEntries = Math.max(1, options.maxEntries ?? 1000);
    this.#compile = options.compile ?? compileTemplate;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** How many times this cache has compiled a template. */
  get compilations(): number {
    return this.#compilations;
  }

  /** Throws TemplateError when the source does not compile. */
  get(key: string, source: string): CompiledTemplate {
    let entry = this.#entries.get(key);
    // Same key, other source: the caller's key did not change with the
    // template, so trust the source over the key.
    if (entry?.source !== source) {
      entry = this.#build(source);
    }
    // Re-inserting moves the key to the end of the Map's order: most recent.
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    this.#evict();
    if ('error' in entry) throw entry.error;
    return entry.template;
  }

  /** Drops every entry whose key starts with keyPrefix (e.g. `${dqr uid}/`). */
  delete(keyPrefix: string): void {
    for (const key of [...this.#entries.keys()]) {
      if (key.startsWith(keyPrefix)) this.#entries.delete(key);
    }
  }

  clear(): void {
    this.#entries.clear();
  }

  #build(source: string): Entry {
    this.#compilations++;
    try {
      return { source, template: this.#compile(source) };
    } catch (error) {
      if (error instanceof TemplateError) return { source, error };
      throw error;
    }
  }

  #evict(): void {
    for (const key of this.#entries.keys()) {
      if (this.#entries.size <= this.#maxEntries) return;
      this.#entries.delete(key);
    }
  }
}
