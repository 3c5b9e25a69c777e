// The Grafana dashboards are JSON written for people to edit (in Grafana, then
// exported); nothing else checks that their queries parse or that the metrics
// they chart still exist. This does, with Prometheus's own PromQL grammar and
// the metric names the Metrics class exports.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { checkPromql, exportedSeries, type ExportedSeries } from './promql-check.ts';

const DIR = join(import.meta.dirname, '..', '..', 'dashboards');

type Json = Record<string, unknown>;

// What each dashboard is for, as the metrics it must chart: a deleted or
// emptied panel fails here rather than on the day someone needs it.
const REQUIRED: Readonly<Record<string, readonly string[]>> = {
  'rowcast-overview.json': [
    'rowcast_dqr_ready',
    'rowcast_dqr_rows',
    'rowcast_dqr_failing_rows',
    'rowcast_applies_total',
    'rowcast_prunes_total',
    'rowcast_prunes_blocked_total',
    'rowcast_sync_freshness_seconds_bucket',
    'controller_runtime_reconcile_total',
    'controller_runtime_reconcile_time_seconds_bucket',
    'workqueue_depth',
    'rowcast_db_query_duration_seconds_bucket',
    'leader_election_master_status',
  ],
  'rowcast-clusters.json': [
    'rowcast_member_reachable',
    'rowcast_member_queue_depth',
    'rowcast_member_queue_wait_seconds_bucket',
    'rowcast_applies_total',
    'rowcast_member_throttled_total',
    'rowcast_member_cache_objects',
    'rowcast_status_watch_objects',
    'rowcast_drift_detected_total',
    'rowcast_sync_freshness_seconds_bucket',
    'rest_client_requests_total',
  ],
};
const EXPECTED = Object.keys(REQUIRED).sort();

interface Panel {
  id?: unknown;
  type?: unknown;
  title?: unknown;
  datasource?: unknown;
  fieldConfig?: { defaults?: { unit?: unknown } };
  targets?: { refId?: unknown; expr?: unknown; datasource?: unknown }[];
  panels?: Panel[];
}

interface Variable {
  name: string;
  type: string;
  query?: unknown;
  datasource?: unknown;
}

interface Dashboard {
  uid?: unknown;
  title?: unknown;
  tags?: unknown;
  schemaVersion?: unknown;
  panels: Panel[];
  templating: { list: Variable[] };
}

function load(file: string): Dashboard {
  return JSON.parse(readFileSync(join(DIR, file), 'utf8')) as Dashboard;
}

/** Every panel, rows and the panels folded inside collapsed rows included. */
function allPanels(panels: readonly Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

// What Grafana puts in place of its built-in variables when it runs a query;
// any duration or number will do for parsing.
const BUILT_IN: Readonly<Record<string, string>> = {
  __rate_interval: '5m',
  __interval: '1m',
  __range: '1h',
  __interval_ms: '60000',
  __range_s: '3600',
  __range_ms: '3600000',
};

/**
 * Replaces Grafana variables ($name, ${name}, ${name:format}, [[name]]) the
 * way Grafana would before the query reaches Prometheus: built-ins by a
 * duration, the dashboard's own variables by a plain label value. A variable
 * the dashboard does not define is reported: Grafana would send it verbatim.
 * `$1`-style references are label_replace capture groups and stay.
 */
function substituteVariables(expr: string, defined: ReadonlySet<string>): { expr: string; problems: string[] } {
  const problems: string[] = [];
  const out = expr.replace(/\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)/g, (whole, braced?: string, bracketed?: string, bare?: string) => {
    const name = braced ?? bracketed ?? bare ?? '';
    if (/^\d+$/.test(name)) return whole;
    const builtIn = BUILT_IN[name];
    if (builtIn !== undefined) return builtIn;
    if (defined.has(name)) return 'value';
    problems.push(`uses $${name}, which the dashboard does not define`);
    return whole;
  });
  return { expr: out, problems };
}

/**
 * A query variable's query: PromQL, or Grafana's label_values(selector, label)
 * and query_result(expr) wrappers, which are not PromQL. For label_values the
 * selector is checked as PromQL and the label must be one the metric carries.
 */
function checkVariableQuery(query: string, exported: ExportedSeries): string[] {
  const labelValues = /^\s*label_values\(\s*(.*?)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$/s.exec(query);
  if (labelValues !== null) {
    const selector = labelValues[1] ?? '';
    const label = labelValues[2] ?? '';
    const checked = checkPromql(selector, exported);
    const labelProblems = checked.metrics.flatMap((m) => (exported.get(m)?.has(label) === false ? [`${m} has no label ${label}`] : []));
    return [...checked.problems, ...labelProblems];
  }
  if (/^\s*label_values\(/.test(query)) return ['label_values(label) without a metric cannot be checked; name the metric'];
  const queryResult = /^\s*query_result\((.*)\)\s*$/s.exec(query);
  if (queryResult !== null) return [...checkPromql(queryResult[1] ?? '', exported).problems];
  if (/^\s*(metrics|label_names)\(/.test(query)) return [`${query}: not checkable; use label_values(metric, label)`];
  return [...checkPromql(query, exported).problems];
}

function isDatasourceVariable(ds: unknown): boolean {
  if (typeof ds !== 'object' || ds === null) return false;
  const { type, uid } = ds as Json;
  return type === 'prometheus' && (uid === '${datasource}' || uid === '$datasource');
}

describe('dashboards/', () => {
  let exported: ExportedSeries = new Map();
  before(async () => {
    exported = await exportedSeries();
  });

  test('holds the overview and per-cluster dashboards', () => {
    assert.deepEqual(readdirSync(DIR).filter((f) => f.endsWith('.json')).sort(), EXPECTED);
  });

  test('the checks catch what they are meant to catch', () => {
    // Guards the guard: a checker that accepts everything would pass every dashboard.
    const cases: [string, RegExp][] = [
      ['sum(rate(rowcast_applies_total[5m]', /syntax error/],
      ['rate(rowcast_applys_total[5m])', /rowcast_applys_total: not a metric Rowcast exports/],
      ['rowcast_sync_freshness_seconds', /not a metric Rowcast exports/],
      ['rowcast_applies_total{clustr="a"}', /has no label clustr/],
      ['rate(rowcast_applies_total)', /needs a range vector/],
      ['sum(rowcast_applies_total[5m])', /not an argument of a function that takes one/],
      ['{job="rowcast"}', /without a metric name/],
    ];
    for (const [expr, problem] of cases) {
      const { problems } = checkPromql(expr, exported);
      assert.ok(problems.some((p) => problem.test(p)), `${expr}: expected ${String(problem)}, got ${JSON.stringify(problems)}`);
    }
    assert.deepEqual(checkPromql('histogram_quantile(0.99, sum by (le) (rate(rowcast_sync_freshness_seconds_bucket[5m])))', exported).problems, []);
    assert.deepEqual(substituteVariables('rate(x{a=~"$nope"}[$__rate_interval])', new Set()).problems, ['uses $nope, which the dashboard does not define']);
    assert.deepEqual(checkVariableQuery('label_values(rowcast_member_reachable, result)', exported), ['rowcast_member_reachable has no label result']);
  });

  const uids = new Set<unknown>();
  for (const file of EXPECTED) {
    describe(file, () => {
      const dashboard = load(file);
      const variables = dashboard.templating.list;
      const defined = new Set(variables.map((v) => v.name));
      const panels = allPanels(dashboard.panels);

      test('is a Grafana 10+ dashboard with a uid, the rowcast tag and a Prometheus datasource variable', () => {
        assert.equal(typeof dashboard.uid, 'string');
        assert.ok(!uids.has(dashboard.uid), `uid ${String(dashboard.uid)} is used by another dashboard`);
        uids.add(dashboard.uid);
        assert.equal(typeof dashboard.title, 'string');
        assert.deepEqual(dashboard.tags, ['rowcast']);
        assert.ok(typeof dashboard.schemaVersion === 'number' && dashboard.schemaVersion >= 38, `schemaVersion ${String(dashboard.schemaVersion)}`);
        const datasource = variables.find((v) => v.name === 'datasource');
        assert.equal(datasource?.type, 'datasource');
        assert.equal(datasource.query, 'prometheus');
      });

      test('every panel has a unique id and a title; every data panel a unit and the datasource variable', () => {
        const ids = panels.map((p) => p.id);
        assert.ok(ids.every((id) => typeof id === 'number'), 'every panel needs a numeric id');
        assert.equal(new Set(ids).size, ids.length, `duplicate panel ids: ${JSON.stringify(ids)}`);
        for (const panel of panels) {
          assert.ok(typeof panel.title === 'string' && panel.title.trim() !== '', `panel ${String(panel.id)} has no title`);
          if (panel.type === 'row') continue;
          const where = `panel ${String(panel.id)} "${panel.title}"`;
          assert.ok(isDatasourceVariable(panel.datasource), `${where}: datasource must be the \${datasource} variable`);
          assert.ok(typeof panel.fieldConfig?.defaults?.unit === 'string', `${where}: set a unit`);
          assert.ok((panel.targets ?? []).length > 0, `${where}: no queries`);
          for (const target of panel.targets ?? []) {
            assert.ok(target.datasource === undefined || isDatasourceVariable(target.datasource), `${where} ${String(target.refId)}: datasource must be the \${datasource} variable`);
          }
          const refIds = (panel.targets ?? []).map((t) => t.refId);
          assert.equal(new Set(refIds).size, refIds.length, `${where}: duplicate refIds`);
        }
      });

      test('every query parses as PromQL, names only metrics Rowcast exports, and the required ones are charted', () => {
        const problems: string[] = [];
        const used = new Set<string>();
        let checked = 0;
        for (const panel of panels) {
          for (const target of panel.targets ?? []) {
            const where = `panel ${String(panel.id)} "${String(panel.title)}" ${String(target.refId)}`;
            if (typeof target.expr !== 'string') {
              problems.push(`${where}: no expr`);
              continue;
            }
            const substituted = substituteVariables(target.expr, defined);
            const result = checkPromql(substituted.expr, exported);
            problems.push(...[...substituted.problems, ...result.problems].map((p) => `${where}: ${p}`));
            for (const metric of result.metrics) used.add(metric);
            checked += 1;
          }
        }
        assert.deepEqual(problems, []);
        assert.ok(checked > 0, 'no queries were checked');
        assert.deepEqual((REQUIRED[file] ?? []).filter((m) => !used.has(m)), [], 'metrics this dashboard must chart');
      });

      test('every query variable uses the datasource variable and a checkable query', () => {
        const problems: string[] = [];
        for (const variable of variables.filter((v) => v.type === 'query')) {
          if (!isDatasourceVariable(variable.datasource)) problems.push(`$${variable.name}: datasource must be the \${datasource} variable`);
          const raw = typeof variable.query === 'object' && variable.query !== null ? (variable.query as Json)['query'] : variable.query;
          if (typeof raw !== 'string') {
            problems.push(`$${variable.name}: no query`);
            continue;
          }
          const substituted = substituteVariables(raw, defined);
          problems.push(...[...substituted.problems, ...checkVariableQuery(substituted.expr, exported)].map((p) => `$${variable.name}: ${p}`));
        }
        assert.deepEqual(problems, []);
      });
    });
  }
});
