// A real distribution/distribution v2.8.2 registry (`docker-registry`) for tests, benchmarks and `peerpull demo --real`.
// It can run on the far side of an emulated WAN (`commandPrefix` + `listenHost`: see wan-link.ts).
//
// Log format (measured on 2.8.2+ds1): every request produces
//  - on STDOUT an Apache combined-log line (gorilla handlers, wraps the whole router, so it also covers
//    unknown routes):  127.0.0.1 - - [23/Nov/2026:05:33:39 +0000] "GET /v2/foo/blobs/sha256:..?ns=a%3Ab HTTP/1.1" 200 1000000 "" "curl/7.88.1"
//    The size is the body bytes written (206: the range length; HEAD on a blob: 0; HEAD on a manifest: the
//    manifest size, although Go sends no body).  Bytes of a client that disconnects early are what was written.
//  - on STDERR a JSON app-log line {"msg":"response completed", "http.request.method", "http.request.uri",
//    "http.response.status", "http.response.written", "http.response.duration", ...} — but only for
//    routed /v2/ API requests (not for unknown routes).
// accessLog() is built from the STDOUT lines; appLog() exposes the parsed JSON lines.
import fs from 'node:fs';
import path from 'node:path';
import { freePort } from './ports.ts';
import { makeTempDir, spawnManaged } from './processes.ts';
import type { ManagedProcess, ExitInfo } from './processes.ts';

export const REGISTRY_BIN = '/usr/bin/docker-registry';
/** Requests sent by the fixture itself carry this user agent and are left out of accessLog(). */
export const FIXTURE_USER_AGENT = 'peerpull-fixture';

export type RequestKind = 'manifest' | 'blob' | 'upload' | 'tags' | 'catalog' | 'base' | 'other';

export interface AccessEntry {
  method: string;
  /** URI path without the query string. */
  path: string;
  /** Raw query string without '?', '' if none. */
  query: string;
  /** The request URI as logged (path + query). */
  uri: string;
  status: number;
  /**
   * Response body bytes as logged. Caveat (2.8.2): HEAD on a manifest logs the manifest size although no
   * body is sent (HEAD on a blob logs 0); bytesSent() therefore ignores HEAD requests.
   */
  bytes: number;
  /** Time the registry logged (1 s resolution), ms since epoch. */
  time: number;
  /** Time the fixture received the line, ms since epoch. */
  receivedAt: number;
  userAgent: string;
  kind: RequestKind;
  /** Repository name for /v2/<name>/(manifests|blobs|tags)/... requests. */
  repo?: string;
  /** Tag or digest for manifests/blobs requests. */
  reference?: string;
}

export interface AppLogEntry {
  [key: string]: unknown;
  level?: string;
  msg?: string;
  time?: string;
}

export interface RequestFilter {
  method?: string;
  pathIncludes?: string;
  kind?: RequestKind;
  status?: number;
  repo?: string;
  /** Match entries whose query string includes this (e.g. 'ns='). */
  queryIncludes?: string;
}

export interface StartRegistryOptions {
  /** Runs the registry as a pull-through cache of this URL (proxy.remoteurl). */
  proxyRemoteUrl?: string;
  /** Fixed port (default: a free port on 127.0.0.1; 5000 on another listenHost, e.g. in a fresh namespace). */
  port?: number;
  /** Address to listen on (default 127.0.0.1), e.g. the address inside a network namespace. */
  listenHost?: string;
  /** Runs the registry through this command prefix, e.g. `['ip', 'netns', 'exec', NS]` (WanLink.commandPrefix). */
  commandPrefix?: string[];
  /** Storage root (default: a fresh temp dir). */
  dataDir?: string;
  /** Append the registry's output to this file. */
  logFile?: string;
  /** Log level (default info). */
  logLevel?: 'error' | 'warn' | 'info' | 'debug';
  /** Echo the registry's output to stderr. */
  echo?: boolean;
  startTimeoutMs?: number;
}

export interface Registry {
  /** '127.0.0.1:PORT' (or listenHost:PORT) */
  host: string;
  /** 'http://127.0.0.1:PORT' (or http://listenHost:PORT) */
  url: string;
  port: number;
  dataDir: string;
  configPath: string;
  /** The current process (changes on restart()). */
  readonly process: ManagedProcess;
  accessLog(): AccessEntry[];
  appLog(): AppLogEntry[];
  countRequests(filter?: RequestFilter): number;
  /** Sum of response body bytes over matching non-HEAD requests (e.g. {method:'GET', kind:'blob'}). */
  bytesSent(filter?: RequestFilter): number;
  clearLog(): void;
  /**
   * Waits until every request completed before this call is in accessLog() (sends a marker request
   * and waits for its log line). Call before counting right after a client finished.
   */
  flushLog(timeoutMs?: number): Promise<void>;
  stop(): Promise<ExitInfo>;
  /** Stops (if running) and starts again with the same port, config and data dir. */
  restart(): Promise<void>;
  kill9(): Promise<ExitInfo>;
}

const MONTHS: Record<string, number> = {
  Jan: 0, Feb: 1, Mar: 2, Apr: 3, May: 4, Jun: 5, Jul: 6, Aug: 7, Sep: 8, Oct: 9, Nov: 10, Dec: 11,
};

// 127.0.0.1 - - [23/Nov/2026:05:33:39 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"
const COMBINED_RE =
  /^(\S+) \S+ \S+ \[(\d{2})\/(\w{3})\/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-]\d{4})\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+|-) "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"/;

const API_RE = /^\/v2\/(.+)\/(manifests|blobs|tags)\/(.+)$/;

/** Parses one Apache combined access-log line as written by distribution 2.8.2; undefined if it is not one. */
export function parseAccessLine(line: string, receivedAt = Date.now()): AccessEntry | undefined {
  const m = COMBINED_RE.exec(line);
  if (!m) return undefined;
  const [, , dd, mon, yyyy, hh, mi, ss, tz, method, uri, status, bytes, , ua] = m as unknown as string[];
  const tzSign = tz!.startsWith('-') ? -1 : 1;
  const tzMin = tzSign * (parseInt(tz!.slice(1, 3), 10) * 60 + parseInt(tz!.slice(3, 5), 10));
  const time =
    Date.UTC(+yyyy!, MONTHS[mon!] ?? 0, +dd!, +hh!, +mi!, +ss!) - tzMin * 60_000;
  const q = uri!.indexOf('?');
  const p = q >= 0 ? uri!.slice(0, q) : uri!;
  const entry: AccessEntry = {
    method: method!,
    path: p,
    query: q >= 0 ? uri!.slice(q + 1) : '',
    uri: uri!,
    status: parseInt(status!, 10),
    bytes: bytes === '-' ? 0 : parseInt(bytes!, 10),
    time,
    receivedAt,
    userAgent: ua!,
    kind: 'other',
  };
  if (p === '/v2/' || p === '/v2') entry.kind = 'base';
  else if (p === '/v2/_catalog') entry.kind = 'catalog';
  else {
    const api = API_RE.exec(p);
    if (api) {
      entry.repo = api[1];
      const what = api[2];
      const rest = api[3]!;
      if (what === 'manifests') {
        entry.kind = 'manifest';
        entry.reference = rest;
      } else if (what === 'tags') {
        entry.kind = 'tags';
      } else if (rest.startsWith('uploads')) {
        entry.kind = 'upload';
      } else {
        entry.kind = 'blob';
        entry.reference = rest;
      }
    }
  }
  return entry;
}

export function matchesFilter(e: AccessEntry, f: RequestFilter): boolean {
  if (f.method !== undefined && e.method !== f.method.toUpperCase()) return false;
  if (f.pathIncludes !== undefined && !e.path.includes(f.pathIncludes)) return false;
  if (f.kind !== undefined && e.kind !== f.kind) return false;
  if (f.status !== undefined && e.status !== f.status) return false;
  if (f.repo !== undefined && e.repo !== f.repo) return false;
  if (f.queryIncludes !== undefined && !e.query.includes(f.queryIncludes)) return false;
  return true;
}

function yamlString(s: string): string {
  return JSON.stringify(s); // JSON strings are valid YAML double-quoted scalars
}

export function registryConfig(o: { port: number; dataDir: string; proxyRemoteUrl?: string; logLevel?: string; listenHost?: string }): string {
  const lines = [
    'version: 0.1',
    'log:',
    `  level: ${o.logLevel ?? 'info'}`,
    '  formatter: json',
    '  accesslog:',
    '    disabled: false',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${yamlString(o.dataDir)}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: ${o.listenHost ?? '127.0.0.1'}:${o.port}`,
    '  secret: peerpull-fixture-http-secret',
    '  headers:',
    '    X-Content-Type-Options: [nosniff]',
  ];
  if (o.proxyRemoteUrl) lines.push('proxy:', `  remoteurl: ${yamlString(o.proxyRemoteUrl)}`);
  return lines.join('\n') + '\n';
}

async function waitReady(url: string, proc: ManagedProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    if (!proc.running) {
      await proc.exited;
      throw new Error(`docker-registry exited during startup\n${proc.tail()}`);
    }
    try {
      const res = await fetch(`${url}/v2/`, {
        headers: { 'user-agent': `${FIXTURE_USER_AGENT}/ready` },
        signal: AbortSignal.timeout(1000),
      });
      await res.arrayBuffer();
      if (res.status === 200) return;
      lastErr = new Error(`GET /v2/ -> ${res.status}`);
    } catch (e) {
      lastErr = e;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`docker-registry at ${url} not ready after ${timeoutMs} ms: ${String(lastErr)}\n${proc.tail()}`);
}

export async function startRegistry(opts: StartRegistryOptions = {}): Promise<Registry> {
  const listenHost = opts.listenHost ?? '127.0.0.1';
  const port = opts.port ?? (listenHost !== '127.0.0.1' ? 5000 : await freePort());
  const baseDir = makeTempDir('pp-registry-');
  const dataDir = opts.dataDir ?? path.join(baseDir, 'data');
  fs.mkdirSync(dataDir, { recursive: true });
  const configPath = path.join(baseDir, 'config.yml');
  fs.writeFileSync(
    configPath,
    registryConfig({ port, dataDir, proxyRemoteUrl: opts.proxyRemoteUrl, logLevel: opts.logLevel, listenHost }),
  );
  const host = `${listenHost}:${port}`;
  const url = `http://${host}`;
  const startTimeoutMs = opts.startTimeoutMs ?? 15_000;

  let entries: AccessEntry[] = [];
  let appEntries: AppLogEntry[] = [];
  const onLine = (line: string, stream: 'stdout' | 'stderr') => {
    if (stream === 'stdout') {
      const e = parseAccessLine(line);
      if (e && !e.userAgent.startsWith(FIXTURE_USER_AGENT)) entries.push(e);
      return;
    }
    if (line.startsWith('{')) {
      try {
        const j = JSON.parse(line) as AppLogEntry;
        const ua = j['http.request.useragent'];
        if (typeof ua === 'string' && ua.startsWith(FIXTURE_USER_AGENT)) return;
        appEntries.push(j);
      } catch {
        // not JSON
      }
    }
  };

  const launch = async (): Promise<ManagedProcess> => {
    const [cmd, ...prefixArgs] = [...(opts.commandPrefix ?? []), REGISTRY_BIN];
    const proc = spawnManaged(cmd as string, [...prefixArgs, 'serve', configPath], {
      name: `docker-registry:${port}`,
      logFile: opts.logFile,
      echo: opts.echo,
      onLine,
    });
    try {
      await waitReady(url, proc, startTimeoutMs);
    } catch (e) {
      await proc.kill9();
      throw e;
    }
    return proc;
  };

  let proc = await launch();
  let markerSeq = 0;

  const registry: Registry = {
    host,
    url,
    port,
    dataDir,
    configPath,
    get process() {
      return proc;
    },
    accessLog: () => entries.slice(),
    appLog: () => appEntries.slice(),
    countRequests: (filter = {}) => entries.filter((e) => matchesFilter(e, filter)).length,
    bytesSent: (filter = {}) =>
      entries.filter((e) => e.method !== 'HEAD' && matchesFilter(e, filter)).reduce((n, e) => n + e.bytes, 0),
    clearLog: () => {
      entries = [];
      appEntries = [];
    },
    async flushLog(timeoutMs = 5_000) {
      const marker = `${FIXTURE_USER_AGENT}/flush-${process.pid}-${++markerSeq}`;
      const seen = proc.waitForLine((l, s) => s === 'stdout' && l.includes(`"${marker}"`), timeoutMs, { fromNow: true });
      const res = await fetch(`${url}/v2/`, { headers: { 'user-agent': marker }, signal: AbortSignal.timeout(timeoutMs) });
      await res.arrayBuffer();
      await seen;
    },
    stop: () => proc.stop('SIGTERM', 5_000),
    async restart() {
      await proc.stop('SIGTERM', 5_000);
      proc = await launch();
    },
    kill9: () => proc.kill9(),
  };
  return registry;
}
