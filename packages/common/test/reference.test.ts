import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  formatImageReference,
  isRegistryHost,
  isRepositoryName,
  isTag,
  normalizeRepository,
  parseImageReference,
  parseManifestRef,
  parseRepositoryName,
} from '../src/reference.ts';
import { OciError } from '../src/oci-error.ts';

const HEX = 'a'.repeat(64);
const DIGEST = `sha256:${HEX}`;

describe('repository names (OCI grammar)', () => {
  test('accepts the forms the spec allows', () => {
    for (const name of ['nginx', 'library/nginx', 'a/b/c', 'my-app', 'my--app', 'my_app', 'my__app', 'a.b', 'x0/y1', 'k8s.gcr/pause', '0']) {
      assert.equal(isRepositoryName(name), true, name);
    }
  });

  test('rejects separators in the wrong places', () => {
    for (const name of ['a..b', 'a//b', '/a', 'a/', '.a', 'a.', '-a', 'a-', '_a', 'a___b', 'a_-b', 'a._b', '', 'a/./b', 'a/../b']) {
      assert.equal(isRepositoryName(name), false, JSON.stringify(name));
    }
  });

  test('rejects upper case and other characters', () => {
    for (const name of ['Nginx', 'library/NGINX', 'a b', 'a:b', 'a@b', 'a+b', 'ä']) {
      assert.equal(isRepositoryName(name), false, name);
    }
  });

  test('limits the length to 255 characters', () => {
    const exactly255 = `${'a'.repeat(127)}/${'b'.repeat(127)}`;
    assert.equal(exactly255.length, 255);
    assert.equal(isRepositoryName(exactly255), true);
    assert.equal(isRepositoryName(`${exactly255}c`), false);
    assert.equal(isRepositoryName('a'.repeat(10_000)), false);
  });

  test('parseRepositoryName throws OciError 400 NAME_INVALID with a truncated name', () => {
    assert.equal(parseRepositoryName('library/nginx'), 'library/nginx');
    const long = 'A'.repeat(1000);
    assert.throws(() => parseRepositoryName(long), (err: unknown) => {
      assert.ok(err instanceof OciError);
      assert.equal(err.status, 400);
      assert.equal(err.code, 'NAME_INVALID');
      assert.ok(err.message.length < 200, 'message should not echo the whole input');
      return true;
    });
  });
});

describe('tags', () => {
  test('accepts valid tags up to 128 characters', () => {
    for (const tag of ['latest', 'v1.2.3', '1.0-rc1', 'UPPER_case', '_x', 'a'.repeat(128)]) {
      assert.equal(isTag(tag), true, tag);
    }
  });

  test('rejects invalid tags', () => {
    for (const tag of ['', '.hidden', '-x', 'a'.repeat(129), 'a/b', 'a:b', 'a@b', 'with space']) {
      assert.equal(isTag(tag), false, JSON.stringify(tag));
    }
  });
});

describe('parseManifestRef', () => {
  test('a tag', () => {
    assert.deepEqual(parseManifestRef('v1.0'), { kind: 'tag', tag: 'v1.0' });
  });

  test('a digest', () => {
    assert.deepEqual(parseManifestRef(DIGEST), { kind: 'digest', digest: DIGEST });
  });

  test('something digest-shaped but invalid is DIGEST_INVALID, not a tag', () => {
    assert.throws(() => parseManifestRef('sha256:abc'), { name: 'OciError', code: 'DIGEST_INVALID', status: 400 });
    assert.throws(() => parseManifestRef(`sha512:${'a'.repeat(128)}`), { code: 'DIGEST_INVALID' });
  });

  test('an invalid tag is TAG_INVALID', () => {
    assert.throws(() => parseManifestRef('.bad'), { name: 'OciError', code: 'TAG_INVALID', status: 400 });
    assert.throws(() => parseManifestRef('a'.repeat(129)), { code: 'TAG_INVALID' });
  });
});

describe('parseImageReference', () => {
  test('a bare name is docker.io/library/NAME:latest', () => {
    assert.deepEqual(parseImageReference('nginx'), { registry: 'docker.io', repository: 'library/nginx', tag: 'latest' });
  });

  test('docker.io single-segment names get library/, multi-segment ones do not', () => {
    assert.deepEqual(parseImageReference('docker.io/nginx:1.27'), { registry: 'docker.io', repository: 'library/nginx', tag: '1.27' });
    assert.deepEqual(parseImageReference('docker.io/library/nginx'), { registry: 'docker.io', repository: 'library/nginx', tag: 'latest' });
    assert.deepEqual(parseImageReference('bitnami/redis:7'), { registry: 'docker.io', repository: 'bitnami/redis', tag: '7' });
  });

  test('index.docker.io and registry-1.docker.io are docker.io', () => {
    assert.deepEqual(parseImageReference('index.docker.io/alpine'), { registry: 'docker.io', repository: 'library/alpine', tag: 'latest' });
    assert.deepEqual(parseImageReference('registry-1.docker.io/alpine:3'), { registry: 'docker.io', repository: 'library/alpine', tag: '3' });
  });

  test('localhost:5000/x: the port is not a tag and the name gets no library/ prefix', () => {
    assert.deepEqual(parseImageReference('localhost:5000/x'), { registry: 'localhost:5000', repository: 'x', tag: 'latest' });
    assert.deepEqual(parseImageReference('localhost:5000/x:v2'), { registry: 'localhost:5000', repository: 'x', tag: 'v2' });
    assert.deepEqual(parseImageReference('localhost/x'), { registry: 'localhost', repository: 'x', tag: 'latest' });
    assert.deepEqual(parseImageReference('127.0.0.1:5001/a/b'), { registry: '127.0.0.1:5001', repository: 'a/b', tag: 'latest' });
  });

  test('the first segment is a registry only if it has . or : or is localhost', () => {
    assert.deepEqual(parseImageReference('ghcr.io/owner/app:1'), { registry: 'ghcr.io', repository: 'owner/app', tag: '1' });
    assert.deepEqual(parseImageReference('owner/app'), { registry: 'docker.io', repository: 'owner/app', tag: 'latest' });
  });

  test('digests, with and without a tag', () => {
    assert.deepEqual(parseImageReference(`alpine@${DIGEST}`), { registry: 'docker.io', repository: 'library/alpine', digest: DIGEST });
    assert.deepEqual(parseImageReference(`ghcr.io/a/b:1.0@${DIGEST}`), { registry: 'ghcr.io', repository: 'a/b', tag: '1.0', digest: DIGEST });
    assert.deepEqual(parseImageReference(`localhost:5000/x@${DIGEST}`), { registry: 'localhost:5000', repository: 'x', digest: DIGEST });
  });

  test('an invalid digest is rejected', () => {
    assert.throws(() => parseImageReference('alpine@sha256:1234'), { code: 'DIGEST_INVALID' });
    assert.throws(() => parseImageReference(`alpine@sha256:${'A'.repeat(64)}`), { code: 'DIGEST_INVALID' });
  });

  test('an invalid repository or tag is rejected', () => {
    assert.throws(() => parseImageReference('Nginx'), /invalid repository/);
    assert.throws(() => parseImageReference('ghcr.io/a//b'), /invalid repository/);
    assert.throws(() => parseImageReference('nginx:.bad'), /invalid tag/);
  });

  test('honours a different default registry', () => {
    assert.deepEqual(parseImageReference('app', 'ghcr.io'), { registry: 'ghcr.io', repository: 'app', tag: 'latest' });
  });

  test('formatImageReference round-trips', () => {
    for (const input of ['docker.io/library/nginx:latest', `ghcr.io/a/b:1@${DIGEST}`, `localhost:5000/x@${DIGEST}`]) {
      assert.equal(formatImageReference(parseImageReference(input)), input);
    }
  });

  test('normalizeRepository only touches docker.io', () => {
    assert.equal(normalizeRepository('docker.io', 'nginx'), 'library/nginx');
    assert.equal(normalizeRepository('docker.io', 'a/b'), 'a/b');
    assert.equal(normalizeRepository('ghcr.io', 'nginx'), 'nginx');
  });
});

describe('isRegistryHost', () => {
  test('accepts lower-case host[:port]', () => {
    for (const host of ['docker.io', 'ghcr.io', 'registry.k8s.io', 'localhost', 'localhost:5000', '127.0.0.1:5001', 'my-registry.example.com:443', 'a']) {
      assert.equal(isRegistryHost(host), true, host);
    }
  });

  test('rejects userinfo, upper case, trailing dots, IPv6 literals and junk', () => {
    for (const host of [
      'user@docker.io', 'user:pass@docker.io', 'a@docker.io',
      'DOCKER.IO', 'Docker.io',
      'docker.io.', 'docker.io.:443', '.docker.io', 'docker..io',
      '[::1]', '[::1]:5000', '::1', 'fe80::1',
      '', 'docker.io:', 'docker.io:abc', 'docker.io:123456', 'docker.io/x', 'http://docker.io', '-bad.io', 'bad-.io', 'a b',
    ]) {
      assert.equal(isRegistryHost(host), false, JSON.stringify(host));
    }
  });

  test('rejects over-long hosts and labels', () => {
    assert.equal(isRegistryHost(`${'a'.repeat(63)}.io`), true);
    assert.equal(isRegistryHost(`${'a'.repeat(64)}.io`), false);
    const long = Array.from({ length: 60 }, () => 'abcd').join('.');
    assert.ok(long.length > 253);
    assert.equal(isRegistryHost(long), false);
  });
});
