import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isInternalHost, realmRefusal, redirectRefusal } from '../src/redirect-policy.ts';

test('isInternalHost: loopback, private, link-local, CGNAT, unique-local, mapped and localhost are internal; public hosts are not', () => {
  const internal = [
    'localhost', 'LOCALHOST', 'localhost.', 'registry.localhost', '127.0.0.1', '127.1.2.3', '0.0.0.0', '10.1.2.3', '172.16.0.1', '172.31.255.255',
    '192.168.1.1', '169.254.169.254', '100.64.0.1', '100.127.255.255', '198.18.0.1', '224.0.0.1', '255.255.255.255',
    '[::1]', '[::]', '[fd00::1]', '[fc00::1]', '[fe80::1]', '[fe80::1%25lo]', '[febf::1]', '[fec0::1]', '[ff02::1]', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]',
    '[::ffff:a9fe:a9fe]', '[::ffff:10.0.0.1]', '[64:ff9b::a9fe:a9fe]', '[::127.0.0.1]', '[0:0:0:0:0:ffff:192.168.0.1]',
  ];
  const external = ['registry-1.docker.io', 'ghcr.io', 'production.cloudflare.docker.com', '8.8.8.8', '172.32.0.1', '172.15.0.1', '100.128.0.1', '169.253.1.1', '192.169.0.1', '[2001:db8::1]', '[2606:4700::1111]', '[::ffff:8.8.8.8]', '[64:ff9b::808:808]', 'metadata.google.internal'];
  for (const h of internal) assert.equal(isInternalHost(h), true, h);
  for (const h of external) assert.equal(isInternalHost(h), false, h);
});

test('redirectRefusal: same origin always; cross-origin only https and not to the node network (unless the registry is on it)', () => {
  const hub = new URL('https://registry-1.docker.io');
  const from = new URL('https://registry-1.docker.io/v2/library/nginx/blobs/sha256:aa');
  const ok = (to: string, registry = hub, origin = from) => assert.equal(redirectRefusal(registry, origin, new URL(to)), undefined, to);
  const refused = (to: string, why: RegExp, registry = hub, origin = from) => assert.match(redirectRefusal(registry, origin, new URL(to)) ?? '', why, to);
  ok('https://production.cloudflare.docker.com/registry-v2/docker/registry/v2/blobs/sha256/aa/data?sig=x');
  ok('https://registry-1.docker.io/other/path');
  ok('https://pkg-containers.githubusercontent.com/ghcr1/blobs/sha256:aa');
  refused('http://production.cloudflare.docker.com/x', /downgrade/);
  refused('https://169.254.169.254/latest/meta-data/', /loopback, private or link-local/);
  refused('https://127.0.0.1:10250/pods', /loopback, private or link-local/);
  refused('https://[::ffff:169.254.169.254]/', /loopback, private or link-local/);
  refused('https://localhost/x', /loopback, private or link-local/);
  refused('https://10.96.0.1/api', /loopback, private or link-local/);
  refused('https://user:pw@cdn.example.com/x', /credentials/);
  refused('file:///etc/passwd', /not http/);
  refused('gopher://cdn.example.com/x', /not http/);
  // A registry on the local network may redirect to local storage (over http if it speaks http itself).
  const onPrem = new URL('http://10.0.0.5:5000');
  const onPremFrom = new URL('http://10.0.0.5:5000/v2/x/blobs/sha256:aa');
  ok('https://10.0.0.6:9000/bucket/x', onPrem, onPremFrom);
  ok('http://10.0.0.5:5000/storage/x', onPrem, onPremFrom);
  ok('http://10.0.0.6:9000/bucket/x', onPrem, onPremFrom);
  refused('http://10.0.0.6:9000/bucket/x', /downgrade/, new URL('https://10.0.0.5'), new URL('https://10.0.0.5/v2/x/blobs/sha256:aa'));
  // A public plain-http registry (rare) may not send the mirror elsewhere in clear text.
  refused('http://cdn.example.com/x', /plain http/, new URL('http://registry.example.com'), new URL('http://registry.example.com/v2/x/blobs/sha256:aa'));
});

test('realmRefusal: a token realm on the node network only for a registry on it', () => {
  const hub = new URL('https://registry-1.docker.io');
  assert.equal(realmRefusal(hub, new URL('https://auth.docker.io/token')), undefined);
  assert.match(realmRefusal(hub, new URL('http://169.254.169.254/token')) ?? '', /link-local/);
  assert.match(realmRefusal(hub, new URL('https://127.0.0.1:8080/token')) ?? '', /loopback/);
  assert.match(realmRefusal(hub, new URL('ftp://auth.docker.io/token')) ?? '', /not http/);
  const local = new URL('http://127.0.0.1:5000');
  assert.equal(realmRefusal(local, new URL('http://127.0.0.1:5001/token')), undefined);
});
