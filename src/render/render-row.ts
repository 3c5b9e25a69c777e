import { ANNOTATIONS, OWNER_LABEL } from '../api/index.ts';
import { hashText, sortedCopyWith } from './canonical-json.ts';
import { HelperError, MissingFieldError, describeLocation } from './errors.ts';
import { groupOf } from './kube-names.ts';
import { kindKey } from './literal-kinds.ts';
import { withoutPointers } from './json-pointer.ts';
import { ownerStamp } from './ownership.ts';
import { parseOutput } from './parse-output.ts';
import type { CompiledTemplate } from './template.ts';
import type { RenderContext, RenderFailure, RenderOptions, RenderedObject, RowRenderResult, TextRenderResult } from './types.ts';
import { annotationSizeProblem, isRecord, validateManifest } from './validate-manifest.ts';

/** Rendered text one row may produce: several times etcd's 1.5 MiB object limit. */
const MAX_OUTPUT_CHARS = 8 * 1024 * 1024;
/** Values one row's objects may hold: YAML aliases can expand a few bytes enormously. */
const MAX_NODES = 1_000_000;
/** Failures reported per row; the first is what status shows. */
const MAX_FAILURES = 20;

/** Runs the template for one row and returns the text; never throws for bad row data. */
export function renderTemplate(
  template: CompiledTemplate,
  context: RenderContext,
  options: Pick<RenderOptions, 'rowKey' | 'now'>,
): TextRenderResult {
  const { rowKey } = options;
  const data: Record<string, unknown> = options.now === undefined ? {} : { rowcastClock: options.now };
  let text: string;
  try {
    text = template.execute({ row: context.row, metadata: context.metadata, cluster: context.cluster }, data);
  } catch (error) {
    return { ok: false, failure: executionFailure(rowKey, error) };
  }
  if (text.length > MAX_OUTPUT_CHARS) {
    return {
      ok: false,
      failure: { rowKey, field: 'output', message: `the row renders to ${text.length} characters, more than ${MAX_OUTPUT_CHARS}` },
    };
  }
  return { ok: true, text };
}

/**
 * Renders one row to the objects it stands for: template, parse, validate,
 * stamp ownership, hash. Everything wrong with the row or its output is
 * returned as failures of this row alone; this function does not throw.
 */
export function renderRow(template: CompiledTemplate, context: RenderContext, options: RenderOptions): RowRenderResult {
  try {
    return renderChecked(template, context, options);
  } catch (error) {
    // Unforeseen input (a stack overflow on absurd nesting...) still fails
    // only this row.
    return failed([{ rowKey: options.rowKey, field: 'template', message: `rendering failed: ${messageOf(error)}` }]);
  }
}

function renderChecked(template: CompiledTemplate, context: RenderContext, options: RenderOptions): RowRenderResult {
  const { rowKey, defaultNamespace } = options;
  const rendered = renderTemplate(template, context, options);
  if (!rendered.ok) return failed([rendered.failure]);

  const parsed = parseOutput(rendered.text);
  if (!parsed.ok) return failed([{ rowKey, field: 'output', message: parsed.message }]);

  const stamp = ownerStamp(options.owner);
  const budget = { nodes: MAX_NODES };
  const failures: RenderFailure[] = [];
  const objects: RenderedObject[] = [];
  const identities = new Map<string, number>();
  for (const { index: document, value } of parsed.documents) {
    const manifest = validateManifest(value);
    if (Array.isArray(manifest)) {
      for (const problem of manifest) failures.push({ rowKey, field: problem.field, message: problem.message, document });
      continue;
    }
    const { apiVersion, kind, name } = manifest;
    const refused = kindRefusal(apiVersion, kind, options.allowedKinds, template.literalKinds);
    if (refused !== undefined) {
      failures.push({ rowKey, field: 'kind', message: refused, document });
      continue;
    }
    const namespaceDefaulted = manifest.namespace === undefined;
    const namespace = manifest.namespace ?? defaultNamespace;

    const identity = `${groupOf(apiVersion)}\u0000${kind}\u0000${namespace}\u0000${name}`;
    const earlier = identities.get(identity);
    if (earlier !== undefined) {
      failures.push({
        rowKey,
        field: 'metadata.name',
        message: `${kind} ${namespace}/${name} is also rendered by document ${earlier} of this row`,
        document,
      });
      continue;
    }
    identities.set(identity, document);

    let body: Record<string, unknown>;
    try {
      body = stampedBody(manifest.body, manifest.metadata, {
        namespace: namespaceDefaulted ? namespace : undefined,
        ownerLabel: stamp.label,
        ownerRef: stamp.ref,
        rowKey,
        budget,
      });
    } catch (error) {
      failures.push({ rowKey, field: '.', message: messageOf(error), document });
      if (budget.nodes < 0) break;
      continue;
    }
    // Fields left to others count for nothing after the create: not in the hash, not in an update's body.
    const pointers = options.ignoreFields?.get(kindKey(apiVersion, kind));
    const stripped = pointers === undefined ? undefined : withoutPointers(body, pointers);
    const createBody = stripped?.removed === true ? body : undefined;
    if (stripped?.removed === true) body = stripped.value;
    const hash = hashText(JSON.stringify(body));
    // metadata cannot be ignored: both bodies share it, hash annotation included.
    const annotations = (body.metadata as { annotations: Record<string, string> }).annotations;
    annotations[ANNOTATIONS.hash] = hash;
    const sizeProblem = annotationSizeProblem(annotations);
    if (sizeProblem !== undefined) {
      failures.push({ rowKey, field: sizeProblem.field, message: sizeProblem.message, document });
      continue;
    }
    objects.push({ apiVersion, kind, name, namespace, namespaceDefaulted, body, hash, document, ...(createBody === undefined || pointers === undefined ? {} : { createBody, ignoredPointers: pointers }) });
  }
  if (failures.length > 0) return failed(failures);
  return { ok: true, objects };
}

/**
 * Why a document's kind may not be rendered, if it may not: the one place
 * spec.allowedKinds (or, absent, the template's literal kinds) is enforced.
 */
function kindRefusal(apiVersion: string, kind: string, allowed: ReadonlySet<string> | undefined, literal: ReadonlySet<string>): string | undefined {
  const key = kindKey(apiVersion, kind);
  const set = allowed ?? literal;
  if (set.has(key)) return undefined;
  const group = groupOf(apiVersion);
  const what = group === '' ? `${kind} (core group)` : `${group}/${kind}`;
  const show = (keys: ReadonlySet<string>): string => [...keys].map((k) => (k.startsWith('/') ? k.slice(1) : k)).join(', ');
  const list =
    allowed !== undefined
      ? `spec.allowedKinds: ${show(allowed)}`
      : literal.size === 0
        ? 'spec.allowedKinds is unset and the template names no kind literally'
        : `spec.allowedKinds is unset, so only the kinds the template names literally: ${show(literal)}`;
  return `${what} is not an allowed kind (${list}); a template that computes its kind must list it in spec.allowedKinds`;
}

interface Stamp {
  /** Set only when defaulted. */
  namespace: string | undefined;
  ownerLabel: string;
  ownerRef: string;
  rowKey: string;
  budget: { nodes: number };
}

/**
 * The server-side-apply body: a fresh copy of the document, keys sorted so
 * its JSON is canonical (the hash input), ownership stamped in as it is
 * copied. Fresh matters: the parsed document may share subtrees through YAML
 * aliases (say metadata with a pod template's), which must not be stamped.
 */
function stampedBody(document: Record<string, unknown>, metadata: Record<string, unknown>, stamp: Stamp): Record<string, unknown> {
  const options = { strictNumbers: true, budget: stamp.budget };
  const labels = isRecord(metadata.labels) ? metadata.labels : undefined;
  const annotations = isRecord(metadata.annotations) ? metadata.annotations : undefined;
  const metadataExtra: Record<string, unknown> = {
    labels: sortedCopyWith(labels, { [OWNER_LABEL]: stamp.ownerLabel }, options),
    annotations: sortedCopyWith(annotations, { [ANNOTATIONS.ownerRef]: stamp.ownerRef, [ANNOTATIONS.rowKey]: stamp.rowKey }, options),
  };
  if (stamp.namespace !== undefined) metadataExtra.namespace = stamp.namespace;
  return sortedCopyWith(document, { metadata: sortedCopyWith(metadata, metadataExtra, options) }, options);
}

function failed(failures: RenderFailure[]): RowRenderResult {
  const kept = failures.slice(0, MAX_FAILURES);
  return { ok: false, failure: kept[0] as RenderFailure, failures: kept };
}

function executionFailure(rowKey: string, error: unknown): RenderFailure {
  if (error instanceof MissingFieldError) {
    return { rowKey, field: error.path, message: `${describeLocation(error.location)}: ${error.message}` };
  }
  if (error instanceof HelperError) {
    return { rowKey, field: 'template', message: `${describeLocation(error.location)}: ${error.message}` };
  }
  return { rowKey, field: 'template', message: messageOf(error) };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
