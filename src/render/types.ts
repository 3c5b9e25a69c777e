/** What a template sees. */
export interface RenderContext {
  /** Column → value. Dates render as ISO 8601 (UTC), bigints as decimal text, bytes as base64. */
  row: Record<string, unknown>;
  /** The DatabaseQueryResource's own metadata. */
  metadata: { name: string; namespace: string; labels: Record<string, string>; annotations: Record<string, string> };
  /** The member cluster being rendered for: one row may render differently per cluster. */
  cluster: { name: string; labels: Record<string, string> };
}

/** The DQR that owns what a row renders to. */
export interface DqrOwner {
  hubId: string;
  namespace: string;
  name: string;
  uid: string;
}

/**
 * The DQR and the ClusterTarget (namespace/name) an object was rendered for:
 * two ClusterTargets reaching one apiserver own what each applied, and never
 * each other's.
 */
export interface OwnerIdentity extends DqrOwner {
  target: string;
}

export interface RenderOptions {
  /** Stamped on every object (annotation rowcast.dev/row-key) and named in failures. */
  rowKey: string;
  /** Filled in when a document has no metadata.namespace: the DQR's namespace. */
  defaultNamespace: string;
  owner: OwnerIdentity;
  /**
   * The kinds a document may have, as `group/Kind` keys (`/Kind` for the
   * core group; see allowedKindKey): spec.allowedKinds. Absent: the kinds the
   * template names literally.
   */
  allowedKinds?: ReadonlySet<string>;
  /** spec.ignoreFields by kind key (as allowedKinds): JSON pointers Rowcast sets on create only. */
  ignoreFields?: ReadonlyMap<string, readonly string[]>;
  /** The `now` helper's clock; the real one when absent. */
  now?: () => Date;
}

export interface RenderedObject {
  apiVersion: string;
  kind: string;
  name: string;
  /** As written, or defaulted. */
  namespace: string | undefined;
  /** The template gave no namespace and the DQR's was filled in (sync strips it again for cluster-scoped kinds). */
  namespaceDefaulted: boolean;
  /** Plain JSON, ownership stamped: a server-side-apply body (without spec.ignoreFields, which createBody has). */
  body: Record<string, unknown>;
  /** Set when spec.ignoreFields removed something from body: the body a create sends, as rendered. */
  createBody?: Record<string, unknown>;
  /** spec.ignoreFields of this kind, when createBody is set: an update sends the member's values there. */
  ignoredPointers?: readonly string[];
  /** contentHash of body before the hash annotation was added; also that annotation's value. */
  hash: string;
  /** Index of the document within the row's output (items of a top-level list count one each). */
  document: number;
}

export interface RenderFailure {
  rowKey: string;
  /**
   * A template path (`row.nmae`); a path inside a document (`metadata.name`,
   * `metadata.labels[app]`, `.` for the whole document); `template` (a helper
   * failed) or `output` (not YAML/JSON, or too large).
   */
  field: string;
  message: string;
  document?: number;
}

export type RowRenderResult =
  | { ok: true; objects: RenderedObject[] }
  /** failure is the first of failures; failures lists every problem found in the row (capped). */
  | { ok: false; failure: RenderFailure; failures: RenderFailure[] };

export type TextRenderResult = { ok: true; text: string } | { ok: false; failure: RenderFailure };
