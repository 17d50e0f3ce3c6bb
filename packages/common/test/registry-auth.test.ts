import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Dispatcher } from 'undici';
import { TokenCache, parseWwwAuthenticate, type AuthChallenge, type TokenRequest } from '../src/registry-auth.ts';

describe('parseWwwAuthenticate', () => {
  test('a Docker Hub style Bearer challenge', () => {
    assert.deepEqual(
      parseWwwAuthenticate('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"'),
      { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/nginx:pull' } },
    );
  });

  test('commas inside quotes, escapes, spaces, unquoted values and case', () => {
    assert.deepEqual(
      parseWwwAuthenticate('BEARER Realm="http://127.0.0.1:1/t" , scope="repository:a:pull,push", error=insufficient_scope, note="say \\"hi\\""'),
      { scheme: 'bearer', params: { realm: 'http://127.0.0.1:1/t', scope: 'repository:a:pull,push', error: 'insufficient_scope', note: 'say "hi"' } },
    );
  });

  test('Basic challenges', () => {
    assert.deepEqual(parseWwwAuthenticate('Basic realm="Registry"'), { scheme: 'basic', params: { realm: 'Registry' } });
    assert.deepEqual(parseWwwAuthenticate('basic'), { scheme: 'basic', params: {} });
  });

  test('unknown schemes and empty headers are undefined', () => {
    assert.equal(parseWwwAuthenticate(undefined), undefined);
    assert.equal(parseWwwAuthenticate(''), undefined);
    assert.equal(parseWwwAuthenticate('Negotiate abc'), undefined);
    assert.equal(parseWwwAuthenticate('Digest realm="x"'), undefined);
  });
});

interface FakeCall {
  origin: string;
  path: string;
  headers: Record<string, string>;
}

/** A Dispatcher that answers token requests from a script and records them; no network involved. */
function fakeDispatcher(answer: (call: FakeCall) => Promise<{ status: number; body: string }> | { status: number; body: string }) {
  const calls: FakeCall[] = [];
  const dispatcher = {
    async request(opts: { origin: string; path: string; headers: Record<string, string>; signal?: AbortSignal }) {
      const call = { origin: String(opts.origin), path: opts.path, headers: opts.headers };
      calls.push(call);
      const { status, body } = await answer(call);
      return { statusCode: status, headers: {}, body: { text: async () => body } };
    },
  } as unknown as Dispatcher;
  return { dispatcher, calls };
}

function bearer(params: Record<string, string>): AuthChallenge {
  return { scheme: 'bearer', params };
}

function request(challenge: AuthChallenge, extra: Partial<TokenRequest> = {}): TokenRequest {
  return {
    registry: 'registry.test',
    challenge,
    scope: 'repository:library/x:pull',
    credentials: undefined,
    signal: new AbortController().signal,
    ...extra,
  };
}

const REALM = { realm: 'https://auth.test/token', service: 'registry.test' };

describe('TokenCache', () => {
  test('asks the realm with service and scope, then caches until shortly before expiry', async () => {
    let now = 1_000_000;
    let n = 0;
    const { dispatcher, calls } = fakeDispatcher(() => ({ status: 200, body: JSON.stringify({ token: `t${++n}`, expires_in: 300 }) }));
    const cache = new TokenCache(dispatcher, () => now);
    assert.equal(await cache.token(request(bearer(REALM))), 't1');
    assert.equal(calls.length, 1);
    const url = new URL(calls[0]?.path ?? '', calls[0]?.origin);
    assert.equal(url.origin, 'https://auth.test');
    assert.equal(url.pathname, '/token');
    assert.equal(url.searchParams.get('service'), 'registry.test');
    assert.equal(url.searchParams.get('scope'), 'repository:library/x:pull');
    assert.equal(calls[0]?.headers.authorization, undefined);

    now += 289_000;
    assert.equal(await cache.token(request(bearer(REALM))), 't1', 'still cached');
    assert.equal(cache.cached('registry.test', 'repository:library/x:pull'), 't1');
    now += 2_000; // past expires_in minus the 10 s safety margin
    assert.equal(cache.cached('registry.test', 'repository:library/x:pull'), undefined);
    assert.equal(await cache.token(request(bearer(REALM))), 't2');
    assert.equal(calls.length, 2);
  });

  test('tokens are cached per registry and scope; the challenge scope wins over the default', async () => {
    let n = 0;
    const { dispatcher, calls } = fakeDispatcher(() => ({ status: 200, body: JSON.stringify({ token: `t${++n}` }) }));
    const cache = new TokenCache(dispatcher);
    assert.equal(await cache.token(request(bearer(REALM))), 't1');
    assert.equal(await cache.token(request(bearer(REALM), { scope: 'repository:library/y:pull' })), 't2');
    assert.equal(await cache.token(request(bearer(REALM), { registry: 'other.test' })), 't3');
    assert.equal(await cache.token(request(bearer({ ...REALM, scope: 'repository:library/y:pull' }))), 't2');
    assert.equal(calls.length, 3);
    cache.invalidate('registry.test', 'repository:library/x:pull');
    assert.equal(await cache.token(request(bearer(REALM))), 't4');
  });

  test('without expires_in a token lives 60 s (renewed at 50 s); access_token is accepted', async () => {
    let now = 0;
    const { dispatcher, calls } = fakeDispatcher(() => ({ status: 200, body: JSON.stringify({ access_token: 'oauth' }) }));
    const cache = new TokenCache(dispatcher, () => now);
    assert.equal(await cache.token(request(bearer(REALM))), 'oauth');
    now = 49_000;
    await cache.token(request(bearer(REALM)));
    assert.equal(calls.length, 1);
    now = 51_000;
    await cache.token(request(bearer(REALM)));
    assert.equal(calls.length, 2);
  });

  test('concurrent requests for one scope share one fetch', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const { dispatcher, calls } = fakeDispatcher(async () => {
      await gate;
      return { status: 200, body: '{"token":"shared"}' };
    });
    const cache = new TokenCache(dispatcher);
    const all = Promise.all(Array.from({ length: 10 }, () => cache.token(request(bearer(REALM)))));
    release();
    assert.deepEqual(await all, Array(10).fill('shared'));
    assert.equal(calls.length, 1);
  });

  test('credentials go as Basic to an https realm and to a loopback http realm', async () => {
    const { dispatcher, calls } = fakeDispatcher(() => ({ status: 200, body: '{"token":"t"}' }));
    const cache = new TokenCache(dispatcher);
    const credentials = { username: 'alice', password: 'pw' };
    await cache.token(request(bearer(REALM), { credentials }));
    await cache.token(request(bearer({ realm: 'http://127.0.0.1:9/token' }), { credentials, registry: 'local' }));
    const basic = `Basic ${Buffer.from('alice:pw').toString('base64')}`;
    assert.deepEqual(calls.map((c) => c.headers.authorization), [basic, basic]);
  });

  test('refuses to send credentials to a plain-http realm that is not loopback', async () => {
    const { dispatcher, calls } = fakeDispatcher(() => ({ status: 200, body: '{"token":"t"}' }));
    const cache = new TokenCache(dispatcher);
    await assert.rejects(
      cache.token(request(bearer({ realm: 'http://auth.test/token' }), { credentials: { username: 'a', password: 'b' } })),
      /refusing to send credentials .* non-https token realm http:\/\/auth\.test/,
    );
    assert.equal(calls.length, 0, 'no request at all');
    // Anonymous tokens from a plain-http realm are fine.
    assert.equal(await cache.token(request(bearer({ realm: 'http://auth.test/token' }))), 't');
  });

  test('bad realms and bad answers are errors, and failures are not cached', async () => {
    let answer = { status: 500, body: '' };
    const { dispatcher, calls } = fakeDispatcher(() => answer);
    const cache = new TokenCache(dispatcher);
    await assert.rejects(cache.token(request(bearer({}))), /without a realm/);
    await assert.rejects(cache.token(request(bearer({ realm: 'ftp://auth.test/token' }))), /not http\(s\)/);
    await assert.rejects(cache.token(request(bearer(REALM))), /answered 500/);
    answer = { status: 200, body: 'not json' };
    await assert.rejects(cache.token(request(bearer(REALM))), /invalid JSON/);
    answer = { status: 200, body: '{"expires_in":60}' };
    await assert.rejects(cache.token(request(bearer(REALM))), /sent no token/);
    answer = { status: 200, body: '{"token":"finally"}' };
    assert.equal(await cache.token(request(bearer(REALM))), 'finally');
    assert.equal(calls.length, 4);
  });
  test('a token per repository stays bounded: expired tokens go first, then the oldest', async () => {
    let now = 0;
    let n = 0;
    const { dispatcher, calls } = fakeDispatcher(() => ({ status: 200, body: JSON.stringify({ token: `t${++n}`, expires_in: 60 }) }));
    const cache = new TokenCache(dispatcher, () => now, 100);
    // Clients asking for thousands of repositories over hours (each scope one token).
    for (let i = 0; i < 3_000; i++) {
      now += 1_000;
      await cache.token(request(bearer(REALM), { scope: `repository:team/app-${i}:pull` }));
    }
    assert.ok(cache.size <= 100, `${cache.size} tokens held`);
    assert.ok(cache.size >= 40, 'tokens still valid are kept');
    // All alive at once: the oldest are forgotten, the newest still served from the cache.
    for (let i = 0; i < 300; i++) await cache.token(request(bearer(REALM), { scope: `repository:burst/app-${i}:pull` }));
    assert.equal(cache.size, 100);
    const before = calls.length;
    assert.equal(await cache.token(request(bearer(REALM), { scope: 'repository:burst/app-299:pull' })), `t${n}`);
    assert.equal(calls.length, before, 'the newest token was still cached');
    await cache.token(request(bearer(REALM), { scope: 'repository:burst/app-0:pull' }));
    assert.equal(calls.length, before + 1, 'the oldest was fetched again');
  });
});
