import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { DigestHasher, digestHex, isDigest, looksLikeDigest, parseDigest, sha256Digest } from '../src/digest.ts';
import { OciError } from '../src/oci-error.ts';

const VALID = `sha256:${'0123456789abcdef'.repeat(4)}`;

function assertDigestInvalid(value: string, message: RegExp): void {
  assert.throws(() => parseDigest(value), (err: unknown) => {
    assert.ok(err instanceof OciError, 'an OciError');
    assert.equal(err.status, 400);
    assert.equal(err.code, 'DIGEST_INVALID');
    assert.match(err.message, message);
    assert.deepEqual(err.toBody(), { errors: [{ code: 'DIGEST_INVALID', message: err.message }] });
    return true;
  });
}

describe('parseDigest', () => {
  test('returns a valid sha256 digest unchanged', () => {
    assert.equal(parseDigest(VALID), VALID);
    assert.equal(isDigest(VALID), true);
  });

  test('rejects upper-case hex', () => {
    assertDigestInvalid(VALID.toUpperCase().replace('SHA256', 'sha256'), /^invalid digest: sha256:0123456789ABCDEF/);
  });

  test('rejects the wrong length', () => {
    assertDigestInvalid(VALID.slice(0, -1), /^invalid digest: /);
    assertDigestInvalid(`${VALID}0`, /^invalid digest: /);
    assertDigestInvalid('sha256:', /^invalid digest: /);
  });

  test('rejects sha512 naming the unsupported algorithm', () => {
    assertDigestInvalid(`sha512:${'ab'.repeat(64)}`, /unsupported digest algorithm: sha512 \(only sha256\)/);
  });

  test('rejects garbage and truncates long input in the message', () => {
    assertDigestInvalid('', /^invalid digest: $/);
    assertDigestInvalid('latest', /^invalid digest: latest$/);
    const long = `sha256:${'z'.repeat(500)}`;
    assert.throws(() => parseDigest(long), (err: unknown) => {
      assert.ok(err instanceof OciError);
      assert.ok(err.message.length < 120, `message too long: ${err.message.length}`);
      assert.ok(err.message.endsWith('…'));
      return true;
    });
  });

  test('looksLikeDigest tells digests from tags', () => {
    assert.equal(looksLikeDigest(VALID), true);
    assert.equal(looksLikeDigest('sha512:abcd'), true);
    assert.equal(looksLikeDigest('latest'), false);
    assert.equal(looksLikeDigest('v1.0'), false);
  });
});

describe('sha256Digest and digestHex', () => {
  test('known value for the empty input', () => {
    assert.equal(sha256Digest(''), 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(digestHex(sha256Digest('')), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });
});

describe('DigestHasher', () => {
  test('hashing in chunks equals hashing at once, and counts bytes', () => {
    const data = randomBytes(100_003);
    const hasher = new DigestHasher();
    for (let i = 0; i < data.length; i += 7_919) hasher.update(data.subarray(i, i + 7_919));
    assert.equal(hasher.bytes, data.length);
    assert.equal(hasher.digest(), `sha256:${createHash('sha256').update(data).digest('hex')}`);
  });

  test('an empty hasher gives the empty digest', () => {
    const hasher = new DigestHasher();
    assert.equal(hasher.bytes, 0);
    assert.equal(hasher.digest(), sha256Digest(Buffer.alloc(0)));
  });
});
