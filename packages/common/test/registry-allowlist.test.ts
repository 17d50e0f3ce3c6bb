import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_REGISTRIES, RegistryAllowlist, parseRegistryEntry } from '../src/registry-allowlist.ts';

describe('parseRegistryEntry', () => {
  test('docker.io talks to registry-1.docker.io', () => {
    const entry = parseRegistryEntry('docker.io');
    assert.equal(entry.host, 'docker.io');
    assert.equal(entry.endpoint.href, 'https://registry-1.docker.io/');
  });

  test('other hosts default to https://host', () => {
    assert.equal(parseRegistryEntry('ghcr.io').endpoint.href, 'https://ghcr.io/');
    assert.equal(parseRegistryEntry('127.0.0.1:5001').endpoint.href, 'https://127.0.0.1:5001/');
  });

  test('host=url sets the endpoint, trailing slashes dropped', () => {
    const entry = parseRegistryEntry('127.0.0.1:5001=http://127.0.0.1:5001');
    assert.equal(entry.host, '127.0.0.1:5001');
    assert.equal(entry.endpoint.origin, 'http://127.0.0.1:5001');
    const withPath = parseRegistryEntry(' mirror.local = https://127.0.0.1:8443/prefix/// ');
    assert.equal(withPath.host, 'mirror.local');
    assert.equal(withPath.endpoint.href, 'https://127.0.0.1:8443/prefix');
    const overridden = parseRegistryEntry('docker.io=http://127.0.0.1:5002');
    assert.equal(overridden.endpoint.origin, 'http://127.0.0.1:5002');
  });

  test('rejects invalid hosts and endpoints', () => {
    assert.throws(() => parseRegistryEntry('DOCKER.IO'), /invalid registry "DOCKER.IO": expected a lower-case host\[:port\]/);
    assert.throws(() => parseRegistryEntry('user@ghcr.io'), /invalid registry/);
    assert.throws(() => parseRegistryEntry('docker.io.'), /invalid registry/);
    assert.throws(() => parseRegistryEntry('=http://127.0.0.1:1'), /invalid registry/);
    assert.throws(() => parseRegistryEntry('x.io=not a url'), /invalid endpoint for registry "x.io"/);
    assert.throws(() => parseRegistryEntry('x.io=ftp://127.0.0.1/'), /only http and https/);
    assert.throws(() => parseRegistryEntry('x.io=file:///etc/passwd'), /only http and https/);
  });
});

describe('RegistryAllowlist', () => {
  const allowlist = new RegistryAllowlist(['docker.io', 'ghcr.io', '127.0.0.1:5001=http://127.0.0.1:5001']);

  test('looks up listed hosts', () => {
    assert.equal(allowlist.lookup('docker.io')?.endpoint.href, 'https://registry-1.docker.io/');
    assert.equal(allowlist.lookup('ghcr.io')?.host, 'ghcr.io');
    assert.equal(allowlist.lookup('127.0.0.1:5001')?.endpoint.origin, 'http://127.0.0.1:5001');
  });

  test('index.docker.io and registry-1.docker.io are aliases of docker.io', () => {
    assert.equal(allowlist.lookup('index.docker.io')?.host, 'docker.io');
    assert.equal(allowlist.lookup('registry-1.docker.io')?.host, 'docker.io');
  });

  test('exact match only: look-alikes are not found', () => {
    for (const name of [
      'DOCKER.IO', 'Docker.io', 'docker.io.', 'a@docker.io', 'docker.io:443', 'docker.io:80', ' docker.io', 'docker.io/',
      'https://docker.io', 'evil.docker.io', 'docker.io.evil.com', 'ghcr.io:443', '127.0.0.1', '127.0.0.1:5002', 'localhost:5001', '',
      '__proto__', 'constructor', 'quay.io',
    ]) {
      assert.equal(allowlist.lookup(name), undefined, JSON.stringify(name));
    }
  });

  test('an alias is only honoured when docker.io is listed', () => {
    const noHub = new RegistryAllowlist(['ghcr.io']);
    assert.equal(noHub.lookup('docker.io'), undefined);
    assert.equal(noHub.lookup('index.docker.io'), undefined);
  });

  test('hosts() and list()', () => {
    assert.deepEqual(allowlist.hosts(), ['docker.io', 'ghcr.io', '127.0.0.1:5001']);
    assert.equal(allowlist.list().length, 3);
  });

  test('the constructor rejects invalid entries', () => {
    assert.throws(() => new RegistryAllowlist(['ghcr.io', 'GHCR.IO']), /invalid registry/);
  });

  test('the default registries are all valid', () => {
    const defaults = new RegistryAllowlist(DEFAULT_REGISTRIES);
    assert.equal(defaults.list().length, DEFAULT_REGISTRIES.length);
    for (const registry of defaults.list()) assert.equal(registry.endpoint.protocol, 'https:');
  });
});
