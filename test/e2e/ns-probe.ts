// Run by hardening-ns.test.ts INSIDE a network namespace of its own (loopback only, with private, link-local
// and unique-local addresses added to `lo`), so that whatever the daemon dials stays in the namespace.
// Starts: a fake allowlisted registry on 127.0.0.1:P1 (answers 404, records every request), recording
// listeners on every other address the ns values name (each accepts, counts, closes), and a `peerpull
// daemon` that allowlists only 127.0.0.1:P1. Sends each ns value (raw and percent-encoded) on manifest and
// blob requests, then the allowlisted one as a control, and prints one JSON document with what happened.
import http from 'node:http';
import net from 'node:net';
import { startPeerpull } from '../fixtures/daemon.ts';
import { freePort } from '../fixtures/ports.ts';
import { rawRequest } from '../fixtures/raw-http.ts';

export interface NsProbeResult {
  allowedPort: number;
  recorderPort: number;
  /** The recorders on the added addresses saw the probe's own test connections. */
  selfCheck: boolean;
  results: { ns: string; target: string; status: number; code: string | undefined; ms: number }[];
  /** Connections per recording listener (`address:port`). */
  recorded: Record<string, number>;
  /** Requests the allowlisted fake registry received before the control request (excluding `/v2/` probes). */
  allowedRequestsBeforeControl: string[];
  control: { status: number; allowedRequests: string[] };
  prefixForm: { target: string; status: number }[];
  /** Phase 2: a registry on a public-looking address redirects blob GETs, and names token realms, on the node network. */
  redirects: { location: string; status: number; ms: number }[];
  realms: { realm: string; status: number; ms: number }[];
  /** Connections the recorders saw during phase 2, before the control. */
  recordedDuringRedirects: Record<string, number>;
  /** The control: an https redirect to another public-looking address is followed (a connection is made). */
  controlRedirectConnections: number;
}

/** Addresses added to the namespace's `lo` by the test (and loopback itself). */
export const NS_ADDRESSES_V4 = ['127.0.0.1', '10.0.0.1', '172.16.0.1', '192.168.0.1', '169.254.169.254', '100.64.0.1', '203.0.113.11'];
/** A "public-looking" address (TEST-NET-3) for the registry of the redirect phase: not on the node network by the policy. */
export const NS_PUBLIC_REGISTRY = '203.0.113.10';
export const NS_ADDRESSES_V6 = ['::1', 'fd00::1'];

async function main(): Promise<void> {
  const allowedPort = await freePort();
  const recorderPort = await freePort();
  const requests: string[] = [];
  const allowed = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"NAME_UNKNOWN","message":"fake"}]}');
  });
  await new Promise<void>((r) => allowed.listen(allowedPort, '127.0.0.1', r));

  const recorded: Record<string, number> = {};
  const servers: net.Server[] = [];
  const record = async (host: string, port: number): Promise<void> => {
    const key = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    recorded[key] = 0;
    const server = net.createServer((s) => {
      recorded[key]!++;
      s.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, ipv6Only: host.includes(':') }, resolve);
    });
    servers.push(server);
  };
  // The allowlisted port on every other address; the well-known ports and a spare port on all of them.
  for (const host of [...NS_ADDRESSES_V4, ...NS_ADDRESSES_V6]) {
    if (host !== '127.0.0.1') await record(host, allowedPort);
    for (const port of [80, 443, 5000, recorderPort]) await record(host, port);
  }

  // Self-check: the recorders on the added addresses do see connections (then start counting from zero).
  for (const [host, port] of [['10.0.0.1', 80], ['169.254.169.254', 80], ['fd00::1', allowedPort]] as const) {
    await new Promise<void>((resolve, reject) => net.connect({ host, port }).once('close', () => resolve()).once('error', reject));
  }
  const selfCheck = recorded['10.0.0.1:80'] === 1 && recorded['169.254.169.254:80'] === 1 && recorded[`[fd00::1]:${allowedPort}`] === 1;
  for (const key of Object.keys(recorded)) recorded[key] = 0;

  const P1 = allowedPort;
  const R = recorderPort;
  const daemon = await startPeerpull({ registries: [`127.0.0.1:${P1}=http://127.0.0.1:${P1}`], extraArgs: ['--upstream-timeout', '2s'] });
  const nsValues = [
    // other listeners, by name and address
    `127.0.0.1:${R}`, `localhost:${R}`, 'localhost', `localhost:${P1}`, `LOCALHOST:${P1}`, `localhost.:${P1}`, '127.0.0.1', '127.0.0.1:80', '127.0.0.1:443',
    // the allowlisted registry, spelled differently
    `127.0.0.1:${P1}.`, `127.0.0.1.:${P1}`, `127.0.0.1:0${P1}`, `127.0.0.1:00${P1}`, `127.0.0.1:+${P1}`, `127.0.0.1: ${P1}`, ` 127.0.0.1:${P1}`, `127.0.0.1:${P1} `,
    `127.0.0.1:${P1}:${P1}`, `127.1:${P1}`, `127.0.1:${P1}`, `2130706433:${P1}`, `0x7f000001:${P1}`, `0x7f.0.0.1:${P1}`, `0177.0.0.1:${P1}`, `017700000001:${P1}`,
    `127.0.0.01:${P1}`, `127.000.000.001:${P1}`, `127\u30020\u30020\u30021:${P1}`, `\uff11\uff12\uff17.0.0.1:${P1}`, `0.0.0.0:${P1}`, `0:${P1}`,
    `[::1]:${P1}`, `::1:${P1}`, `[::ffff:127.0.0.1]:${P1}`, `[::ffff:7f00:1]:${P1}`, `[0:0:0:0:0:ffff:127.0.0.1]:${P1}`, `[::]:${P1}`, `[fe80::1%25lo]:${P1}`, `[fe80::1%lo]:${P1}`,
    // userinfo, paths, schemes
    `a@127.0.0.1:${P1}`, `user:pass@127.0.0.1:${P1}`, `127.0.0.1:${P1}@127.0.0.1:${R}`, `127.0.0.1:${R}#@127.0.0.1:${P1}`, `127.0.0.1:${P1}#x`, `127.0.0.1:${P1}/`, `127.0.0.1:${P1}/..`,
    `127.0.0.1:${P1}\\@x`, `127.0.0.1:${P1}?x=1`, `127.0.0.1:${P1}\0`, `127.0.0.1:${P1}\r\nX-A: b`, `http://127.0.0.1:${P1}`, `https://127.0.0.1:${P1}`, `//127.0.0.1:${P1}`, `127.0.0.1:${P1},127.0.0.1:${R}`,
    // private, link-local, unique-local, shared, metadata
    `10.0.0.1:${P1}`, '10.0.0.1', `172.16.0.1:${P1}`, `192.168.0.1:${P1}`, '169.254.169.254', '169.254.169.254:80', `169.254.169.254:${P1}`, '100.64.0.1:80', `[fd00::1]:${P1}`, '[fd00::1]',
    'metadata.google.internal', 'metadata', 'instance-data', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local:443',
    // well-known registries that are not on this daemon's allowlist (and their aliases)
    'docker.io', 'DOCKER.IO', 'docker.io.', 'registry-1.docker.io', 'index.docker.io', 'ghcr.io', 'quay.io:443',
  ];
  const targets = ['/v2/library/probe/manifests/v1', '/v2/library/probe/blobs/sha256:' + 'a'.repeat(64), '/v2/library/probe/manifests/sha256:' + 'b'.repeat(64)];
  const results: NsProbeResult['results'] = [];
  for (const value of nsValues) {
    const spellings = [encodeURIComponent(value)];
    // Raw too, where it can be sent in a request line at all.
    if (!/[\s\0#?&\u0080-\uffff]/.test(value) && !value.includes('%')) spellings.push(value);
    for (const ns of spellings) {
      for (const target of targets) {
        const res = await rawRequest(daemon.host, 'GET', `${target}?ns=${ns}`);
        let code: string | undefined;
        try {
          code = (JSON.parse(res.body.toString('utf8')) as { errors: { code: string }[] }).errors[0]?.code;
        } catch {
          code = undefined;
        }
        results.push({ ns, target, status: res.status, code, ms: Math.round(res.ms) });
      }
    }
  }
  // Repeated ns: the first one counts; a disallowed first one is refused whatever follows.
  for (const q of [`ns=127.0.0.1:${R}&ns=127.0.0.1:${P1}`, `ns=10.0.0.1:${P1}&ns=127.0.0.1:${P1}`]) {
    const res = await rawRequest(daemon.host, 'GET', `${targets[0]}?${q}`);
    results.push({ ns: q, target: targets[0]!, status: res.status, code: undefined, ms: Math.round(res.ms) });
  }
  // CRI-O's form, the registry as the first path segment without ns: only an allowlisted name counts as a
  // registry; anything else is a repository of the default registry (so it may reach 127.0.0.1:P1 only).
  const prefixForm: NsProbeResult['prefixForm'] = [];
  for (const target of [`/v2/10.0.0.1/library/probe/manifests/v1`, `/v2/169.254.169.254/latest/manifests/v1`, `/v2/localhost/x/manifests/v1`, `/v2/docker.io/library/x/manifests/v1`]) {
    const res = await rawRequest(daemon.host, 'GET', target);
    prefixForm.push({ target, status: res.status });
  }
  const recordedPhase1 = { ...recorded };
  const phase2 = await redirectPhase(recorded);
  const allowedRequestsBeforeControl = requests.filter((r) => r !== 'GET /v2/' && !/\/v2\/(10\.0\.0\.1|169\.254\.169\.254|localhost|docker\.io)\//.test(r));
  const before = requests.length;
  const control = await rawRequest(daemon.host, 'GET', `${targets[0]}?ns=${encodeURIComponent(`127.0.0.1:${P1}`)}`);
  const result: NsProbeResult = {
    allowedPort,
    recorderPort,
    selfCheck,
    results,
    recorded: recordedPhase1,
    allowedRequestsBeforeControl,
    control: { status: control.status, allowedRequests: requests.slice(before).filter((r) => r !== 'GET /v2/') },
    prefixForm,
    ...phase2,
  };
  await daemon.stop();
  for (const s of servers) s.close();
  allowed.close();
  process.stdout.write(`NS-PROBE-RESULT ${JSON.stringify(result)}\n`);
}

/** Phase 2 (see NsProbeResult.redirects): redirects and token realms the policy must refuse, without a connection. */
async function redirectPhase(recorded: Record<string, number>): Promise<Pick<NsProbeResult, 'redirects' | 'realms' | 'recordedDuringRedirects' | 'controlRedirectConnections'>> {
  const port = await freePort();
  const locations = [
    'https://169.254.169.254/latest/meta-data/iam/security-credentials/',
    'https://169.254.169.254:80/latest/meta-data/',
    'https://10.0.0.1/bucket/blob',
    'https://172.16.0.1:5000/x',
    'https://192.168.0.1/x',
    'https://100.64.0.1/x',
    'https://[fd00::1]/x',
    'https://[::ffff:169.254.169.254]/x',
    'https://[::ffff:a9fe:a9fe]/x',
    'https://localhost/x',
    'https://127.0.0.1/x',
    'https://0.0.0.0/x',
    'http://203.0.113.11/x', // cross-origin plain http from a public registry
    `http://${NS_PUBLIC_REGISTRY}:80/x`, // same host, another port, plain http: another origin
  ];
  const realms = ['http://169.254.169.254/token', 'https://10.0.0.1/token', 'https://localhost/token', 'https://[fd00::1]/token'];
  const control = 'https://203.0.113.11/cdn/blob';
  const server = http.createServer((req, res) => {
    const blob = /^\/v2\/library\/r\/blobs\/sha256:0*(\d+)$/.exec(req.url ?? '');
    if (blob) {
      const i = Number(blob[1]);
      return void res.writeHead(307, { location: i === 999 ? control : (locations[i] ?? '/') }).end();
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"NAME_UNKNOWN","message":"fake"}]}');
  });
  await new Promise<void>((r) => server.listen(port, NS_PUBLIC_REGISTRY, r));
  const host = `${NS_PUBLIC_REGISTRY}:${port}`;
  // One registry per realm: a challenge is remembered per registry, so each needs its own.
  const realmServers = await Promise.all(
    realms.map(async (realm) => {
      const p = await freePort();
      const srv = http.createServer((_req, res) => void res.writeHead(401, { 'www-authenticate': `Bearer realm="${realm}",service="x"` }).end());
      await new Promise<void>((r) => srv.listen(p, NS_PUBLIC_REGISTRY, r));
      return { srv, host: `${NS_PUBLIC_REGISTRY}:${p}` };
    }),
  );
  const daemon = await startPeerpull({
    registries: [`${host}=http://${host}`, ...realmServers.map((r) => `${r.host}=http://${r.host}`)],
    defaultRegistry: host,
    extraArgs: ['--upstream-timeout', '2s', '--upstream-connect-timeout', '1s'],
  });
  for (const key of Object.keys(recorded)) recorded[key] = 0;
  const digest = (i: number) => `sha256:${String(i).padStart(64, '0')}`;
  const redirects: NsProbeResult['redirects'] = [];
  for (const [i, location] of locations.entries()) {
    const res = await rawRequest(daemon.host, 'GET', `/v2/library/r/blobs/${digest(i)}`);
    redirects.push({ location, status: res.status, ms: Math.round(res.ms) });
  }
  const realmResults: NsProbeResult['realms'] = [];
  for (const [i, realm] of realms.entries()) {
    const ns = encodeURIComponent(realmServers[i]!.host);
    const res = await rawRequest(daemon.host, 'GET', `/v2/library/tok/manifests/v1?ns=${ns}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    realmResults.push({ realm, status: res.status, ms: Math.round(res.ms) });
  }
  const recordedDuringRedirects = { ...recorded };
  const before = recorded['203.0.113.11:443'] ?? 0;
  const controlRes = await rawRequest(daemon.host, 'GET', `/v2/library/r/blobs/${digest(999)}`);
  await new Promise((r) => setTimeout(r, 200)); // (the recorder's accept may be processed after the answer)
  if (process.env.NS_PROBE_DEBUG) process.stderr.write(`control: ${controlRes.status} ${controlRes.body.toString()}\n${daemon.process.tail(20)}\n`);
  const controlRedirectConnections = (recorded['203.0.113.11:443'] ?? 0) - before;
  await daemon.stop();
  server.close();
  for (const r of realmServers) r.srv.close();
  return { redirects, realms: realmResults, recordedDuringRedirects, controlRedirectConnections };
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '')) {
  await main();
  process.exit(0);
}
