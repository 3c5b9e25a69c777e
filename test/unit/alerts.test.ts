// The alert rules are YAML that Prometheus would load without complaint even
// if an expression named a metric that no longer exists: the alert would just
// never fire. This checks every expression with Prometheus's grammar against
// the metrics the controller exports, and that every alert can be routed
// (severity) and acted on (summary, description, a runbook section that exists).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import yaml from 'js-yaml';
import { checkPromql, exportedSeries, type ExportedSeries } from './promql-check.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const RULES = join(ROOT, 'dashboards', 'alerts.yaml');
const RUNBOOKS = join(ROOT, 'docs', 'alerts.md');

const EXPECTED_ALERTS = [
  'RowcastControllerDown',
  'RowcastDqrNotReady',
  'RowcastDqrsUnassigned',
  'RowcastMemberThrottled',
  'RowcastMemberUnreachable',
  'RowcastNoLeader',
  'RowcastPruneBlocked',
  'RowcastReconcileErrors',
  'RowcastRowsFailing',
  'RowcastSyncStale',
];
const SEVERITIES = new Set(['critical', 'warning', 'info']);
// Prometheus's duration syntax, as `for` and `keep_firing_for` take it.
const DURATION = /^(\d+(ms|s|m|h|d|w|y))+$/;

interface Rule {
  alert?: unknown;
  record?: unknown;
  expr?: unknown;
  for?: unknown;
  labels?: Record<string, unknown>;
  annotations?: Record<string, unknown>;
}

interface RuleFile {
  groups: { name: string; rules: Rule[] }[];
}

function loadRules(): RuleFile {
  return yaml.load(readFileSync(RULES, 'utf8')) as RuleFile;
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes, repeats numbered. */
function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    const heading = fenced ? null : /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (heading === null) continue;
    const base = (heading[1] ?? '')
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, '')
      .replace(/ /g, '-');
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count === 0 ? base : `${base}-${count}`);
  }
  return anchors;
}

describe('dashboards/alerts.yaml', () => {
  let exported: ExportedSeries = new Map();
  before(async () => {
    exported = await exportedSeries();
  });
  const file = loadRules();
  const rules = file.groups.flatMap((g) => g.rules.map((rule) => ({ group: g.name, rule })));
  const alerts = rules.filter(({ rule }) => typeof rule.alert === 'string');

  test('is a rule file with the expected alerts, each once', () => {
    assert.ok(Array.isArray(file.groups) && file.groups.length > 0);
    for (const group of file.groups) {
      assert.equal(typeof group.name, 'string');
      assert.ok(Array.isArray(group.rules) && group.rules.length > 0, `group ${group.name} has no rules`);
    }
    assert.equal(new Set(file.groups.map((g) => g.name)).size, file.groups.length, 'duplicate group names');
    const names = alerts.map(({ rule }) => rule.alert as string).sort();
    assert.deepEqual(names, EXPECTED_ALERTS);
  });

  test('every expression parses as PromQL and names only metrics Rowcast exports', () => {
    const problems: string[] = [];
    for (const { rule } of rules) {
      const name = String(rule.alert ?? rule.record);
      if (typeof rule.expr !== 'string') {
        problems.push(`${name}: no expr`);
        continue;
      }
      problems.push(...checkPromql(rule.expr, exported).problems.map((p) => `${name}: ${p}`));
    }
    assert.deepEqual(problems, []);
    assert.ok(rules.length > 0, 'no rules were checked');
  });

  test('every alert has a severity, a summary, a description, a valid `for` and only known keys', () => {
    for (const { rule } of alerts) {
      const name = String(rule.alert);
      assert.deepEqual(
        Object.keys(rule).filter((k) => !['alert', 'expr', 'for', 'keep_firing_for', 'labels', 'annotations'].includes(k)),
        [],
        `${name}: unknown keys`,
      );
      assert.ok(SEVERITIES.has(String(rule.labels?.['severity'])), `${name}: severity must be one of ${[...SEVERITIES].join(', ')}`);
      for (const key of ['summary', 'description']) {
        const text = rule.annotations?.[key];
        assert.ok(typeof text === 'string' && text.trim() !== '', `${name}: no ${key}`);
      }
      if (rule.for !== undefined) assert.ok(typeof rule.for === 'string' && DURATION.test(rule.for), `${name}: for must be a duration such as 15m`);
    }
  });

  test('annotations use only labels the expression keeps', () => {
    // {{ $labels.x }} for a label the result does not have renders as an
    // empty string in the notification, which nobody notices until paged.
    for (const { rule } of alerts) {
      const expr = String(rule.expr);
      const { metrics } = checkPromql(expr, exported);
      const available = new Set(metrics.flatMap((m) => [...(exported.get(m) ?? [])]));
      const by = /\bby\s*\(([^)]*)\)/.exec(expr);
      const kept = by === null ? available : new Set((by[1] ?? '').split(',').map((l) => l.trim()));
      for (const text of Object.values(rule.annotations ?? {})) {
        for (const [, label] of String(text).matchAll(/\$labels\.(\w+)/g)) {
          assert.ok(label !== undefined && kept.has(label), `${String(rule.alert)}: annotations use $labels.${String(label)}, which ${expr} does not keep`);
        }
      }
    }
  });

  test('every runbook_url points at a section of docs/alerts.md', () => {
    const anchors = headingAnchors(readFileSync(RUNBOOKS, 'utf8'));
    for (const { rule } of alerts) {
      const name = String(rule.alert);
      const url = rule.annotations?.['runbook_url'];
      assert.equal(typeof url, 'string', `${name}: no runbook_url`);
      const match = /^(?:.*\/)?docs\/alerts\.md#([\w-]+)$/.exec(String(url));
      assert.ok(match !== null, `${name}: runbook_url ${String(url)} is not docs/alerts.md#<anchor>`);
      assert.ok(anchors.has(match[1] ?? ''), `${name}: docs/alerts.md has no heading for #${String(match[1])}`);
    }
  });

  test('the anchor check follows GitHub', () => {
    assert.deepEqual(
      [...headingAnchors('# Rowcast alerts\n## RowcastNoLeader\n```\n# not a heading\n```\n## Before you start\n## Before you start\n### Prometheus `rule_files`')],
      ['rowcast-alerts', 'rowcastnoleader', 'before-you-start', 'before-you-start-1', 'prometheus-rule_files'],
    );
  });
});
