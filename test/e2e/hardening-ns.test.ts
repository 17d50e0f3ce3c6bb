// Hardening, `ns`: the query parameter that names the upstream is user input. Everything not exactly on the
// allowlist (private and link-local addresses, localhost, other ports, userinfo, IPv6 literals, upper case,
// trailing dots, numeric IP spellings, well-known registries not configured) is a prompt 404 NAME_UNKNOWN
// and causes NO outbound connection. To observe connections to private addresses without ever sending a
// packet to one, the whole scenario runs in a network namespace of our own that has only `lo`, with those
// addresses added to it, and a recording listener on each (ns-probe.ts).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { onExitSync, run } from '../fixtures/processes.ts';
import { NS_ADDRESSES_V4, NS_ADDRESSES_V6, NS_PUBLIC_REGISTRY, type NsProbeResult } from './ns-probe.ts';

const PROBE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'ns-probe.ts');
const NETNS = `pphard-ns-${process.pid}`;

function ip(...args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
}

describe('hardening: ns values that are not exactly allowlisted', { skip: process.getuid?.() !== 0 ? 'needs root (ip netns)' : false }, () => {
  let result: NsProbeResult;
  let unhook: (() => void) | undefined;

  before(async () => {
    ip('netns', 'add', NETNS);
    unhook = onExitSync(() => void spawnSync('ip', ['netns', 'del', NETNS]));
    ip('netns', 'exec', NETNS, 'ip', 'link', 'set', 'lo', 'up');
    for (const a of [...NS_ADDRESSES_V4.filter((a) => a !== '127.0.0.1'), NS_PUBLIC_REGISTRY]) ip('netns', 'exec', NETNS, 'ip', 'addr', 'add', `${a}/32`, 'dev', 'lo');
    for (const a of NS_ADDRESSES_V6.filter((a) => a !== '::1')) ip('netns', 'exec', NETNS, 'ip', '-6', 'addr', 'add', `${a}/128`, 'dev', 'lo', 'nodad');
    const out = await run('ip', ['netns', 'exec', NETNS, process.execPath, PROBE], { timeoutMs: 240_000 });
    const line = out.stdout.split('\n').find((l) => l.startsWith('NS-PROBE-RESULT '));
    assert.ok(line, `the probe printed its result:\n${out.stdout.slice(-2000)}\n${out.stderr.slice(-2000)}`);
    result = JSON.parse(line.slice('NS-PROBE-RESULT '.length)) as NsProbeResult;
  });

  after(() => {
    spawnSync('ip', ['netns', 'del', NETNS]);
    unhook?.();
  });

  test('every variant gets a prompt 404 NAME_UNKNOWN OCI error', () => {
    assert.ok(result.results.length > 200, `${result.results.length} requests sent`);
    const wrong = result.results.filter((r) => r.status !== 404 || (r.code !== undefined && r.code !== 'NAME_UNKNOWN') || (!r.ns.includes('&') && r.code !== 'NAME_UNKNOWN'));
    assert.deepEqual(wrong, [], 'all refused as not served by this mirror');
    const slow = result.results.filter((r) => r.ms > 1_000);
    assert.deepEqual(slow, [], 'refused at once (no connection attempt, no DNS lookup)');
  });

  test('no outbound connection to any address or port the variants name', (t) => {
    assert.equal(result.selfCheck, true, 'the recording listeners on 10.0.0.1, 169.254.169.254 and fd00::1 do record connections');
    t.diagnostic(`${result.results.length} requests; ${Object.keys(result.recorded).length} recording listeners`);
    const contacted = Object.entries(result.recorded).filter(([, n]) => n > 0);
    assert.deepEqual(contacted, [], `recording listeners on ${Object.keys(result.recorded).length} address:port pairs saw nothing`);
    assert.deepEqual(result.allowedRequestsBeforeControl, [], 'not even the allowlisted registry was asked, under another spelling of its name');
  });

  test('CRI-O path-prefix form: a first segment that is not an allowlisted registry is only a repository name of the default registry', () => {
    for (const p of result.prefixForm) assert.equal(p.status, 404, p.target);
  });

  test('control: the exact allowlisted ns reaches the allowlisted registry (the recorders do work)', () => {
    assert.equal(result.control.status, 404, 'the fake registry answers 404');
    assert.deepEqual(result.control.allowedRequests.filter((r) => r.includes('/manifests/v1')).length >= 1, true, `the daemon asked it: ${JSON.stringify(result.control.allowedRequests)}`);
  });

  test('redirects from a registry on a public address to the node network (metadata service, private, link-local, unique-local, loopback, plain http): refused, prompt 404, no connection', () => {
    assert.ok(result.redirects.length >= 10);
    for (const r of result.redirects) {
      assert.equal(r.status, 404, r.location);
      assert.ok(r.ms < 1_500, `${r.location}: prompt (${r.ms} ms)`);
    }
    for (const r of result.realms) {
      assert.equal(r.status, 404, r.realm);
      assert.ok(r.ms < 1_500, `${r.realm}: prompt (${r.ms} ms)`);
    }
    assert.deepEqual(Object.entries(result.recordedDuringRedirects).filter(([, n]) => n > 0), [], 'no recording listener was contacted by a redirect or a token realm');
  });

  test('control: an https redirect to another public address is followed (the policy lets CDNs through)', () => {
    assert.ok(result.controlRedirectConnections >= 1, `the redirect target was contacted (${result.controlRedirectConnections})`);
  });
});
