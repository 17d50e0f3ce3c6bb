import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { contentRange, parseRange } from '../src/byte-range.ts';

const SIZE = 1000;
const HUGE = '99999999999999999999999'; // far beyond Number.MAX_SAFE_INTEGER

describe('parseRange', () => {
  test('no header means no range', () => {
    assert.deepEqual(parseRange(undefined, SIZE), { kind: 'none' });
    assert.deepEqual(parseRange('', SIZE), { kind: 'none' });
  });

  test('bytes=N-M', () => {
    assert.deepEqual(parseRange('bytes=0-0', SIZE), { kind: 'range', range: { start: 0, end: 0 } });
    assert.deepEqual(parseRange('bytes=10-19', SIZE), { kind: 'range', range: { start: 10, end: 19 } });
    assert.deepEqual(parseRange('bytes=0-999', SIZE), { kind: 'range', range: { start: 0, end: 999 } });
    assert.deepEqual(parseRange(' bytes=5-6 ', SIZE), { kind: 'range', range: { start: 5, end: 6 } });
  });

  test('bytes=N- runs to the end', () => {
    assert.deepEqual(parseRange('bytes=0-', SIZE), { kind: 'range', range: { start: 0, end: 999 } });
    assert.deepEqual(parseRange('bytes=999-', SIZE), { kind: 'range', range: { start: 999, end: 999 } });
  });

  test('bytes=-N is the last N bytes', () => {
    assert.deepEqual(parseRange('bytes=-1', SIZE), { kind: 'range', range: { start: 999, end: 999 } });
    assert.deepEqual(parseRange('bytes=-100', SIZE), { kind: 'range', range: { start: 900, end: 999 } });
  });

  test('an end beyond the size is clamped to the last byte', () => {
    assert.deepEqual(parseRange('bytes=500-5000', SIZE), { kind: 'range', range: { start: 500, end: 999 } });
    assert.deepEqual(parseRange('bytes=0-1000', SIZE), { kind: 'range', range: { start: 0, end: 999 } });
  });

  test('a suffix larger than the size is the whole blob', () => {
    assert.deepEqual(parseRange('bytes=-5000', SIZE), { kind: 'range', range: { start: 0, end: 999 } });
  });

  test('a start at or beyond the size is unsatisfiable', () => {
    assert.deepEqual(parseRange('bytes=1000-', SIZE), { kind: 'unsatisfiable' });
    assert.deepEqual(parseRange('bytes=1000-2000', SIZE), { kind: 'unsatisfiable' });
    assert.deepEqual(parseRange('bytes=0-', 0), { kind: 'unsatisfiable' });
  });

  test('a zero-length suffix is unsatisfiable', () => {
    assert.deepEqual(parseRange('bytes=-0', SIZE), { kind: 'unsatisfiable' });
  });

  test('a suffix range of an empty blob never yields an empty or negative range', () => {
    // RFC 9110 calls it satisfiable, but no Content-Range can describe it: send the whole (empty) body.
    assert.deepEqual(parseRange('bytes=-5', 0), { kind: 'none' });
    assert.deepEqual(parseRange(`bytes=-${HUGE}`, 0), { kind: 'none' });
  });

  test('multi-range, reversed and malformed headers are invalid', () => {
    for (const header of [
      'bytes=0-1,5-6', 'bytes=0-1, 5-6', 'bytes=5-4', 'bytes=-', 'bytes=', 'bytes=a-b', 'bytes=1-2-3', 'bytes = 1-2',
      'items=0-1', 'bytes=+1-2', 'bytes=-1-', 'bytes=1.5-2', 'bytes=0x10-', '0-10', 'garbage',
    ]) {
      assert.deepEqual(parseRange(header, SIZE), { kind: 'invalid' }, header);
    }
  });

  test('huge numbers: an end beyond any size is clamped (RFC 9110 §14.1.1)', () => {
    assert.deepEqual(parseRange(`bytes=0-${HUGE}`, SIZE), { kind: 'range', range: { start: 0, end: 999 } });
    assert.deepEqual(parseRange(`bytes=10-${HUGE}`, SIZE), { kind: 'range', range: { start: 10, end: 999 } });
    assert.deepEqual(parseRange('bytes=0-9223372036854775807', SIZE), { kind: 'range', range: { start: 0, end: 999 } });
  });

  test('huge numbers: a huge start is unsatisfiable, a huge suffix is the whole blob', () => {
    assert.deepEqual(parseRange(`bytes=${HUGE}-`, SIZE), { kind: 'unsatisfiable' });
    assert.deepEqual(parseRange(`bytes=${HUGE}-${HUGE}`, SIZE), { kind: 'unsatisfiable' });
    assert.deepEqual(parseRange(`bytes=-${HUGE}`, SIZE), { kind: 'range', range: { start: 0, end: 999 } });
  });

  test('huge numbers never produce unsafe integers', () => {
    const big = 2 ** 40;
    const result = parseRange(`bytes=${big - 10}-${HUGE}`, big);
    assert.deepEqual(result, { kind: 'range', range: { start: big - 10, end: big - 1 } });
  });

  test('leading zeros are just digits', () => {
    assert.deepEqual(parseRange('bytes=0000000000000000000010-0000000000000000000019', SIZE), { kind: 'range', range: { start: 10, end: 19 } });
  });
});

describe('contentRange', () => {
  test('formats an inclusive range', () => {
    assert.equal(contentRange({ start: 0, end: 99 }, 1000), 'bytes 0-99/1000');
  });
});
