import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decideDrift, fieldsFingerprint, recordApply, renderingManager, type DriftObservation, type ManagedFieldsEntry } from '../../src/clusters/index.ts';

const ROWCAST = 'rowcast-ns-users';
const rendered = { 'f:metadata': { 'f:annotations': { 'f:rowcast.dev/hash': {}, 'f:rowcast.dev/owner-ref': {} }, 'f:labels': { 'f:rowcast.dev/owner': {} } }, 'f:data': { 'f:email': {}, 'f:plan': {} } };
const ours: ManagedFieldsEntry = { manager: ROWCAST, operation: 'Apply', fieldsV1: rendered };
// kubectl edit of data.plan: an update takes the field from its applier.
const edited: ManagedFieldsEntry[] = [
  { manager: ROWCAST, operation: 'Apply', fieldsV1: { ...rendered, 'f:data': { 'f:email': {} } } },
  { manager: 'kubectl-edit', operation: 'Update', fieldsV1: { 'f:data': { 'f:plan': {} } } },
];
// A label of someone else's: Rowcast's fields stay as they were.
const labelled: ManagedFieldsEntry[] = [ours, { manager: 'kubectl-label', operation: 'Update', fieldsV1: { 'f:metadata': { 'f:labels': { 'f:team': {} } } } }];
const record = recordApply(undefined, ROWCAST, { resourceVersion: '10', managedFields: [ours] });

function observe(overrides: Partial<DriftObservation>): ReturnType<typeof decideDrift> {
  return decideDrift({
    event: 'update',
    resourceVersion: '11',
    labels: { 'rowcast.dev/owner': 'abc' },
    deleting: false,
    managedFields: [ours],
    record,
    applying: false,
    removedByRowcast: false,
    ...overrides,
  });
}

describe('decideDrift', () => {
  test("an event carrying a resourceVersion Rowcast's apply returned is its own", () => {
    assert.equal(observe({ resourceVersion: '10', managedFields: edited }).drift, false);
  });

  test('an event while an apply of the object is in flight is taken as its own (its event can come before its answer)', () => {
    const verdict = observe({ applying: true, managedFields: edited });
    assert.equal(verdict.drift, false);
  });

  test('another manager taking a field Rowcast renders is drift, naming the manager, and is reported once', () => {
    const verdict = observe({ managedFields: edited });
    assert.ok(verdict.drift);
    assert.equal(verdict.reason, 'modified');
    assert.deepEqual(verdict.managers, ['kubectl-edit']);
    const again = decideDrift({ event: 'update', resourceVersion: '12', labels: {}, deleting: false, managedFields: edited, record: verdict.record, applying: false, removedByRowcast: false });
    assert.equal(again.drift, false, 'the same fields taken, seen again, are not a second drift');
  });

  test('a change to fields Rowcast does not render is no drift', () => {
    assert.deepEqual(observe({ managedFields: labelled }), { drift: false, why: 'other-fields', record });
  });

  test('a forced apply by another manager that takes every rendered field (Rowcast left with none) is drift', () => {
    const verdict = observe({ managedFields: [{ manager: 'helm', operation: 'Apply', fieldsV1: rendered }] });
    assert.ok(verdict.drift);
    assert.deepEqual(verdict.managers, ['helm']);
  });

  test('an object first seen (a restart, a relist) sets a baseline from the manager of the hash annotation, never drift', () => {
    const verdict = observe({ event: 'add', record: undefined, managedFields: labelled });
    assert.equal(verdict.drift, false);
    assert.equal(verdict.record?.manager, ROWCAST);
    assert.deepEqual(verdict.record.versions, ['11']);
    // From that baseline, a field taken later is drift.
    const later = decideDrift({ event: 'update', resourceVersion: '12', labels: {}, deleting: false, managedFields: edited, record: verdict.record, applying: false, removedByRowcast: false });
    assert.equal(later.drift, true);
  });

  test('an object no Rowcast manager applied (no hash annotation applied) has no baseline and is not judged', () => {
    const verdict = observe({ record: undefined, managedFields: [{ manager: 'kubectl', operation: 'Update', fieldsV1: rendered }] });
    assert.equal(verdict.drift, false);
    assert.equal(verdict.record, undefined);
  });

  test('a delete Rowcast did not make is drift; one it made (prune, unmark) is not', () => {
    const deleted = observe({ event: 'delete', deleting: true });
    assert.ok(deleted.drift);
    assert.equal(deleted.reason, 'deleted');
    assert.equal(deleted.record, undefined, 'the record goes with the object');
    assert.equal(observe({ event: 'delete', removedByRowcast: true }).drift, false);
  });

  test("an object that left the owner label's selector without being deleted was unmarked", () => {
    const verdict = observe({ event: 'delete', labels: { team: 'a' } });
    assert.ok(verdict.drift);
    assert.equal(verdict.reason, 'unmarked');
  });
});

describe('recordApply', () => {
  test('keeps the last three resourceVersions of the same manager, and the fields it holds', () => {
    let r = recordApply(undefined, ROWCAST, { resourceVersion: '1', managedFields: [ours] });
    for (const rv of ['2', '3', '4']) r = recordApply(r, ROWCAST, { resourceVersion: rv, managedFields: [ours] });
    assert.deepEqual(r.versions, ['2', '3', '4']);
    assert.equal(r.fields, fieldsFingerprint([ours], ROWCAST));
    assert.deepEqual(recordApply(r, 'rowcast-other', { resourceVersion: '5', managedFields: [] }).versions, ['5'], 'another manager starts afresh');
  });

  test('fingerprints differ when the held fields differ, and only Apply entries of the manager count', () => {
    assert.notEqual(fieldsFingerprint([ours], ROWCAST), fieldsFingerprint(edited, ROWCAST));
    assert.equal(fieldsFingerprint([{ ...ours, operation: 'Update' }], ROWCAST), undefined);
    assert.equal(renderingManager(labelled), ROWCAST);
    assert.equal(renderingManager([{ manager: 'kubectl', operation: 'Apply', fieldsV1: { 'f:data': {} } }]), undefined);
  });
});
