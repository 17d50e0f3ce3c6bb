import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UploadSlots } from '../src/upload-slots.ts';

test('upload slots: "busy" past the total unless insisting; past the per-peer cap refused even when insisting; releases free both', () => {
  const slots = new UploadSlots({ total: 3, perPeer: 2 });
  const a1 = slots.take('a');
  slots.take('a');
  assert.equal(slots.refusal('a', false), 'peer-limit');
  assert.equal(slots.refusal('a', true), 'peer-limit', 'insisting does not lift the per-peer cap');
  assert.equal(slots.refusal('b', false), undefined, 'another peer still gets a slot');
  slots.take('b');
  assert.equal(slots.refusal('c', false), 'busy');
  assert.equal(slots.refusal('c', true), undefined, 'insisting lifts the total');
  assert.equal(slots.active, 3);
  a1();
  a1(); // a second release of the same slot changes nothing
  assert.equal(slots.active, 2);
  assert.equal(slots.refusal('a', false), undefined);
});
