/** Group of an apiVersion: "apps/v1" → "apps", "v1" → "" (core). */
export function groupOf(apiVersion: string): string {
  const slash = apiVersion.indexOf('/');
  return slash === -1 ? '' : apiVersion.slice(0, slash);
}

/**
 * The identity of an object on one member: group, kind, namespace, name. The
 * version is left out so that moving a template from v1beta1 to v1 updates the
 * object instead of pruning and recreating it.
 */
export function identityOf(object: { apiVersion: string; kind: string; namespace: string | undefined; name: string }): string {
  return `${groupOf(object.apiVersion)}/${object.kind}/${object.namespace ?? ''}/${object.name}`;
}

/** How a person reads an identity in a condition or event. */
export function describeObject(object: { kind: string; namespace: string | undefined; name: string }): string {
  return `${object.kind} ${object.namespace === undefined ? '' : `${object.namespace}/`}${object.name}`;
}
