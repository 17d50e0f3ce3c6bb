import assert from 'node:assert/strict';
import { test } from 'node:test';
import { splitRegistryPrefix } from '../src/registry-path.ts';

const allowlisted = (host: string) => ['docker.io', 'ghcr.io', 'registry.k8s.io'].includes(host);

test('splitRegistryPrefix: an allowlisted registry with a dot as the first segment names the upstream (CRI-O mirror paths)', () => {
  assert.deepEqual(splitRegistryPrefix('docker.io/library/nginx', allowlisted), { registry: 'docker.io', name: 'library/nginx' });
  assert.deepEqual(splitRegistryPrefix('docker.io/nginx', allowlisted), { registry: 'docker.io', name: 'nginx' });
  assert.deepEqual(splitRegistryPrefix('registry.k8s.io/pause', allowlisted), { registry: 'registry.k8s.io', name: 'pause' });
});

test('splitRegistryPrefix: anything else is a repository name of the default registry', () => {
  assert.equal(splitRegistryPrefix('library/nginx', allowlisted), undefined, 'no dot');
  assert.equal(splitRegistryPrefix('my.org/app', allowlisted), undefined, 'a dot, but not an allowlisted registry');
  assert.equal(splitRegistryPrefix('docker.io', allowlisted), undefined, 'nothing after the registry');
  assert.equal(splitRegistryPrefix('library/docker.io/x', allowlisted), undefined, 'only the first segment counts');
});
