import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { formatBytes, formatDuration, parseDuration, parseSize } from '../src/human-units.ts';

describe('parseSize', () => {
  test('binary units', () => {
    assert.equal(parseSize('20GiB'), 20 * 2 ** 30);
    assert.equal(parseSize('512MiB'), 512 * 2 ** 20);
    assert.equal(parseSize('4KiB'), 4096);
    assert.equal(parseSize('1TiB'), 2 ** 40);
    assert.equal(parseSize('1Gi'), 2 ** 30);
  });

  test('decimal units', () => {
    assert.equal(parseSize('1GB'), 1_000_000_000);
    assert.equal(parseSize('500MB'), 500_000_000);
    assert.equal(parseSize('2k'), 2000);
    assert.equal(parseSize('1TB'), 1e12);
  });

  test('plain numbers, bytes, case and whitespace', () => {
    assert.equal(parseSize('1048576'), 1_048_576);
    assert.equal(parseSize('10B'), 10);
    assert.equal(parseSize('0'), 0);
    assert.equal(parseSize(' 2 gib '), 2 * 2 ** 30);
    assert.equal(parseSize(4096), 4096);
  });

  test('fractions are rounded to whole bytes', () => {
    assert.equal(parseSize('1.5GiB'), 1.5 * 2 ** 30);
    assert.equal(parseSize('0.5KB'), 500);
    assert.equal(parseSize('1.0001KiB'), 1024);
  });

  test('errors name the input and the accepted forms', () => {
    for (const bad of ['', 'abc', '-1GiB', '10XB', 'GiB', '1 2', '1e9', '1,5GB', '20 GiBs']) {
      assert.throws(() => parseSize(bad), (err: unknown) => {
        assert.ok(err instanceof Error);
        assert.ok(err.message.startsWith(`invalid size "${bad}"`), err.message);
        assert.match(err.message, /20GiB/);
        return true;
      }, bad);
    }
    assert.throws(() => parseSize(-1), /non-negative/);
    assert.throws(() => parseSize(Number.NaN), /non-negative/);
    assert.throws(() => parseSize(Number.POSITIVE_INFINITY), /non-negative/);
  });
});

describe('parseDuration', () => {
  test('single units', () => {
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('1s'), 1000);
    assert.equal(parseDuration('5m'), 300_000);
    assert.equal(parseDuration('1h'), 3_600_000);
    assert.equal(parseDuration('2d'), 172_800_000);
    assert.equal(parseDuration('1.5s'), 1500);
  });

  test('compound durations', () => {
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('1m30s'), 90_000);
    assert.equal(parseDuration('1s500ms'), 1500);
    assert.equal(parseDuration('5m0s'), 300_000);
  });

  test('bare numbers are seconds', () => {
    assert.equal(parseDuration('10'), 10_000);
    assert.equal(parseDuration(' 2 '), 2000);
    assert.equal(parseDuration(3), 3000);
    assert.equal(parseDuration(0.25), 250);
  });

  test('forever and infinite', () => {
    assert.equal(parseDuration('forever'), Number.POSITIVE_INFINITY);
    assert.equal(parseDuration('infinite'), Number.POSITIVE_INFINITY);
  });

  test('errors name the input and give examples', () => {
    for (const bad of ['5x', 'm', '1h 30m', '-5s', 'abc', '5mm', '1h30', 'ms', 'never']) {
      assert.throws(() => parseDuration(bad), (err: unknown) => {
        assert.ok(err instanceof Error);
        assert.ok(err.message.startsWith(`invalid duration "${bad}"`), err.message);
        assert.match(err.message, /250ms/);
        return true;
      }, bad);
    }
    assert.throws(() => parseDuration(''), /invalid duration ""/);
    assert.throws(() => parseDuration('   '), /invalid duration/);
    assert.throws(() => parseDuration(-1), /non-negative/);
  });
});

describe('formatting', () => {
  test('formatBytes', () => {
    assert.equal(formatBytes(0), '0 B');
    assert.equal(formatBytes(1023), '1023 B');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(20 * 2 ** 30), '20.0 GiB');
  });

  test('formatDuration', () => {
    assert.equal(formatDuration(250), '250ms');
    assert.equal(formatDuration(1500), '1.50s');
    assert.equal(formatDuration(12_300), '12.3s');
    assert.equal(formatDuration(90_000), '1m30s');
    assert.equal(formatDuration(300_000), '5m');
    assert.equal(formatDuration(Number.POSITIVE_INFINITY), 'forever');
  });
});
