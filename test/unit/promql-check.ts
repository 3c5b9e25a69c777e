// PromQL checks shared by the dashboard and alert tests. Both read expressions
// written by hand in JSON or YAML, where nothing else would notice a typo in a
// metric name until a panel stays empty or an alert never fires. The parser is
// Prometheus's own grammar (the one its UI uses), and the metric names come
// from the Metrics class itself, so renaming a metric in code breaks these
// tests instead of silently breaking the dashboards.
import { parser } from '@prometheus-io/lezer-promql';
import { Histogram, Summary } from 'prom-client';
import { Metrics } from '../../src/telemetry/index.ts';

/** Series name → label names it may carry. */
export type ExportedSeries = ReadonlyMap<string, ReadonlySet<string>>;

// Prometheus adds job and instance to every scraped series; Kubernetes service
// discovery (the chart's ServiceMonitor) adds the rest. Matching on them is fine.
const TARGET_LABELS = ['job', 'instance', 'namespace', 'pod', 'service', 'endpoint', 'container'];

/**
 * Every series the controller can export: one Metrics instance with both
 * controllers and one member initialised, as main.ts builds it. Histograms
 * export _bucket (with le), _sum and _count instead of their own name.
 */
export async function exportedSeries(): Promise<ExportedSeries> {
  const metrics = new Metrics();
  metrics.initialiseCluster('x');
  const series = new Map<string, Set<string>>();
  for (const { name } of await metrics.registry.getMetricsAsJSON()) {
    const metric = metrics.registry.getSingleMetric(name);
    // prom-client keeps a metric's label names on the instance but not in its
    // public types; read them structurally and refuse to guess if that changes.
    const labelNames: unknown = (metric as { labelNames?: unknown } | undefined)?.labelNames;
    if (!Array.isArray(labelNames) || !labelNames.every((l) => typeof l === 'string')) {
      throw new Error(`cannot read the label names of ${name} from prom-client`);
    }
    const labels = [...labelNames, ...TARGET_LABELS];
    // By class, not by the JSON's `type`: prom-client types that as a numeric enum but returns strings.
    if (metric instanceof Histogram) {
      series.set(`${name}_bucket`, new Set([...labels, 'le']));
      series.set(`${name}_sum`, new Set(labels));
      series.set(`${name}_count`, new Set(labels));
    } else if (metric instanceof Summary) {
      series.set(name, new Set([...labels, 'quantile']));
      series.set(`${name}_sum`, new Set(labels));
      series.set(`${name}_count`, new Set(labels));
    } else {
      series.set(name, new Set(labels));
    }
  }
  return series;
}

type Tree = ReturnType<typeof parser.parse>;
type Node = Tree['topNode'];

// Functions whose (only or last) argument is a range vector. Anything else
// given a range vector, or one of these given an instant vector, is an error
// Prometheus reports only when the query runs.
const RANGE_FUNCTIONS = new Set([
  'rate',
  'irate',
  'increase',
  'delta',
  'idelta',
  'deriv',
  'changes',
  'resets',
  'predict_linear',
  'holt_winters',
  'double_exponential_smoothing',
]);

function takesRange(functionName: string): boolean {
  return RANGE_FUNCTIONS.has(functionName) || functionName.endsWith('_over_time');
}

function text(expr: string, node: Node): string {
  return expr.slice(node.from, node.to);
}

function unquote(literal: string): string {
  // PromQL string literals are Go-style; JSON covers the double-quoted ones
  // used here, and the others only need their quotes dropped.
  return literal.startsWith('"') ? (JSON.parse(literal) as string) : literal.slice(1, -1);
}

function children(node: Node): Node[] {
  const out: Node[] = [];
  for (let child = node.firstChild; child !== null; child = child.nextSibling) out.push(child);
  return out;
}

function functionName(call: Node, expr: string): string | undefined {
  const identifier = call.getChild('FunctionIdentifier');
  return identifier === null ? undefined : text(expr, identifier);
}

/** The metric name of a selector, from its identifier or a {__name__="..."} / {"name"} matcher. */
function selectorName(selector: Node, expr: string, problems: string[]): string | undefined {
  const identifier = selector.getChild('Identifier');
  if (identifier !== null) return text(expr, identifier);
  const matchers = selector.getChild('LabelMatchers');
  for (const child of matchers === null ? [] : children(matchers)) {
    if (child.name === 'QuotedLabelName') return unquote(text(expr, child));
    const label = child.getChild('LabelName') ?? child.getChild('QuotedLabelName');
    if (label === null || text(expr, label).replace(/"/g, '') !== '__name__') continue;
    const op = child.getChild('MatchOp');
    const value = child.getChild('StringLiteral');
    if (op?.firstChild?.name !== 'EqlSingle' || value === null) {
      problems.push(`${text(expr, selector)}: a __name__ matcher other than = cannot be checked against the exported metrics`);
      return undefined;
    }
    return unquote(text(expr, value));
  }
  problems.push(`${text(expr, selector)}: a selector without a metric name matches every series`);
  return undefined;
}

function checkSelector(selector: Node, expr: string, exported: ExportedSeries, problems: string[]): string | undefined {
  const name = selectorName(selector, expr, problems);
  if (name === undefined) return undefined;
  const labels = exported.get(name);
  if (labels === undefined) {
    problems.push(`${name}: not a metric Rowcast exports`);
    return name;
  }
  const matchers = selector.getChild('LabelMatchers');
  for (const matcher of matchers === null ? [] : children(matchers)) {
    const label = matcher.getChild('LabelName') ?? matcher.getChild('QuotedLabelName');
    if (label === null || matcher.name === 'QuotedLabelName') continue;
    const labelName = text(expr, label).replace(/"/g, '');
    if (labelName !== '__name__' && !labels.has(labelName)) {
      problems.push(`${name}{${labelName}=...}: ${name} has no label ${labelName} (it has ${[...labels].join(', ')})`);
    }
  }
  return name;
}

function checkRanges(node: Node, expr: string, problems: string[]): void {
  if (node.name === 'MatrixSelector' || node.name === 'SubqueryExpr') {
    const call = node.parent?.name === 'FunctionCallBody' ? node.parent.parent : null;
    const fn = call?.name === 'FunctionCall' ? functionName(call, expr) : undefined;
    if (fn === undefined || !takesRange(fn)) {
      problems.push(`${text(expr, node)}: a range vector here is not an argument of a function that takes one (rate, increase, *_over_time...)`);
    }
  }
  if (node.name === 'FunctionCall') {
    const fn = functionName(node, expr);
    const body = node.getChild('FunctionCallBody');
    const args = body === null ? [] : children(body);
    if (fn !== undefined && takesRange(fn) && !args.some((a) => a.name === 'MatrixSelector' || a.name === 'SubqueryExpr')) {
      problems.push(`${text(expr, node)}: ${fn}() needs a range vector such as metric[5m]`);
    }
  }
}

export interface PromqlCheck {
  /** Empty when the expression is valid and names only exported series. */
  readonly problems: readonly string[];
  /** Every metric name the expression selects. */
  readonly metrics: readonly string[];
}

/**
 * Parses `expr` with Prometheus's grammar and reports syntax errors, selectors
 * of series Rowcast does not export (or with labels they lack), and range
 * vectors in the wrong place.
 */
export function checkPromql(expr: string, exported: ExportedSeries): PromqlCheck {
  const problems: string[] = [];
  const metrics: string[] = [];
  if (expr.trim() === '') return { problems: ['empty expression'], metrics };
  const tree = parser.parse(expr);
  tree.iterate({
    enter: (ref) => {
      const node = ref.node;
      if (ref.type.isError) {
        problems.push(`syntax error at offset ${ref.from}: ${JSON.stringify(expr.slice(Math.max(0, ref.from - 20), ref.from))} ⚠ ${JSON.stringify(expr.slice(ref.from, ref.from + 20))}`);
        return;
      }
      if (ref.name === 'VectorSelector') {
        const name = checkSelector(node, expr, exported, problems);
        if (name !== undefined) metrics.push(name);
      }
      checkRanges(node, expr, problems);
    },
  });
  return { problems, metrics };
}
