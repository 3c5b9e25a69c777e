import yaml from 'js-yaml';

/** The anchors of a "billion laughs": `levels` levels of ten aliases each, 10^levels leaves from about 1.5 KB. */
export function aliasBombAnchors(levels = 10): string[] {
  const lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  for (let i = 1; i < levels; i++) lines.push(`a${i}: &a${i} [${Array.from({ length: 10 }, () => `*a${i - 1}`).join(',')}]`);
  return lines;
}

/**
 * A kubeconfig that is valid but for an alias bomb inside its current
 * cluster's entry: the part a vetting step keeps and serialises.
 */
export function kubeconfigWithAliasBomb(kubeconfig: string): string {
  const doc = yaml.load(kubeconfig) as { clusters: { cluster: Record<string, unknown> }[] };
  for (const entry of doc.clusters) entry.cluster['extensions'] = 'BOMB';
  const body = yaml.dump(doc, { lineWidth: -1 }).replaceAll('extensions: BOMB', 'extensions: *a9');
  return `preferences:\n${aliasBombAnchors().map((line) => `  ${line}`).join('\n')}\n${body}`;
}
