/** RFC 6901 pointers over plain JSON: what spec.ignoreFields names. */

function tokens(pointer: string): string[] {
  return pointer
    .split('/')
    .slice(1)
    .map((t) => t.replaceAll('~1', '/').replaceAll('~0', '~'));
}

function isContainer(value: unknown): value is Record<string, unknown> | unknown[] {
  return typeof value === 'object' && value !== null;
}

function childOf(container: Record<string, unknown> | unknown[], token: string): unknown {
  if (Array.isArray(container)) return /^(0|[1-9][0-9]*)$/.test(token) ? container[Number(token)] : undefined;
  return Object.hasOwn(container, token) ? container[token] : undefined;
}

/** The value at `pointer`, or undefined where there is none. */
export function valueAt(document: unknown, pointer: string): unknown {
  let at: unknown = document;
  for (const token of tokens(pointer)) {
    if (!isContainer(at)) return undefined;
    at = childOf(at, token);
  }
  return at;
}

/**
 * A copy of `document` without what the pointers name (only the containers
 * on their paths are copied), and whether anything was there. An array
 * element is removed, shifting the rest, as JSON Patch's remove does.
 */
export function withoutPointers(document: Record<string, unknown>, pointers: readonly string[]): { value: Record<string, unknown>; removed: boolean } {
  let removed = false;
  let root: Record<string, unknown> = document;
  for (const pointer of pointers) {
    const path = tokens(pointer);
    if (path.length === 0) continue;
    const copy = (container: Record<string, unknown> | unknown[]): Record<string, unknown> | unknown[] => (Array.isArray(container) ? [...container] : { ...container });
    const next = copy(root) as Record<string, unknown>;
    let parent: Record<string, unknown> | unknown[] = next;
    let found = true;
    for (const token of path.slice(0, -1)) {
      const child = childOf(parent, token);
      if (!isContainer(child)) {
        found = false;
        break;
      }
      const copied = copy(child);
      if (Array.isArray(parent)) parent[Number(token)] = copied;
      else parent[token] = copied;
      parent = copied;
    }
    const last = path[path.length - 1] ?? '';
    if (!found || childOf(parent, last) === undefined) continue;
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else Reflect.deleteProperty(parent, last);
    root = next;
    removed = true;
  }
  return { value: root, removed };
}

/**
 * `document` with the values `source` holds at the pointers put in (the
 * containers on their paths created as objects where missing); a pointer
 * `source` holds nothing at is left out.
 */
export function withValuesFrom(document: Record<string, unknown>, source: unknown, pointers: readonly string[]): Record<string, unknown> {
  let root = document;
  for (const pointer of pointers) {
    const value = valueAt(source, pointer);
    const path = tokens(pointer);
    if (value === undefined || path.length === 0) continue;
    const next: Record<string, unknown> = { ...root };
    let parent: Record<string, unknown> | unknown[] = next;
    let placed = true;
    for (const token of path.slice(0, -1)) {
      const child = childOf(parent, token);
      const copied: Record<string, unknown> | unknown[] = isContainer(child) ? (Array.isArray(child) ? [...child] : { ...child }) : {};
      if (Array.isArray(parent)) {
        if (!/^(0|[1-9][0-9]*)$/.test(token) || Number(token) > parent.length) {
          placed = false;
          break;
        }
        parent[Number(token)] = copied;
      } else parent[token] = copied;
      parent = copied;
    }
    const last = path[path.length - 1] ?? '';
    if (!placed) continue;
    if (Array.isArray(parent)) {
      if (!/^(0|[1-9][0-9]*)$/.test(last) || Number(last) > parent.length) continue;
      parent[Number(last)] = value;
    } else parent[last] = value;
    root = next;
  }
  return root;
}
