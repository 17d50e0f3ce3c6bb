// Helpers for the P2P end-to-end tests (p2p.test.ts, p2p-burst.test.ts, p2p-faults.test.ts):
// cluster keys and P2P arguments, Prometheus metrics, peer ids from the logs, blobs on disk.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { DaemonProcess, PeerpullLogLine } from '../fixtures/daemon.ts';
import type { BuiltImage } from '../fixtures/images.ts';
import { makeTempDir } from '../fixtures/processes.ts';
import { pullImage, type PullResult } from '../fixtures/pull-client.ts';
import type { Registry } from '../fixtures/registry.ts';
import { waitUntil } from '../fixtures/wait-until.ts';

export { MB, sleep, stopAll } from './seed-helpers.ts';

// ---- cluster membership -----------------------------------------------------------------------------

/** A new cluster key file: 32 random bytes, base64 (as a Kubernetes Secret holds it). */
export function makeClusterKey(): string {
  const file = path.join(makeTempDir('pp-cluster-key-'), 'cluster.key');
  fs.writeFileSync(file, crypto.randomBytes(32).toString('base64'), { mode: 0o600 });
  return file;
}

/**
 * The P2P arguments of a node: a loopback port of its own and, when given, the cluster key. Port 0 unless
 * one is given (a test of a fixed address): the kernel picks it as the node binds, so no other process can
 * take it in between; peers dial what 'p2p node started' names (peerAddr).
 */
export function p2pArgs(keyFile: string | undefined, port = 0): string[] {
  return [...(keyFile ? ['--cluster-key-file', keyFile] : []), '--p2p-listen', `/ip4/127.0.0.1/tcp/${port}`];
}

/** How daemons move blobs between them: libp2p streams (the default) or the HTTP data plane. */
export type PeerTransport = 'libp2p' | 'http';
export const PEER_TRANSPORTS: readonly PeerTransport[] = ['libp2p', 'http'];

/** A daemon's arguments for the transport: with http it serves the data plane on a port of its own and fetches over it. */
export function transportArgs(transport: PeerTransport): string[] {
  return transport === 'http' ? ['--peer-transport', 'http', '--peer-http-listen', '127.0.0.1:0'] : [];
}

/** Where a daemon serves the HTTP data plane (from its log), e.g. `http://127.0.0.1:40123`. */
export function httpDataOrigin(d: DaemonProcess): string {
  const line = d.logs().findLast((l) => l.msg === 'serving blobs to peers over HTTP (cluster-key authenticated, not encrypted)');
  if (!line) throw new Error(`${d.host} serves no HTTP data plane`);
  const a = line.address as { host: string; port: number };
  return `http://${a.host}:${a.port}`;
}

export interface PeerInfo {
  peerId: string;
  /** Listen multiaddrs without /p2p/. */
  addrs: string[];
  /** The cluster key's fingerprint. */
  cluster: string;
}

/** From the current process's 'p2p node started' line. */
export function peerInfo(d: DaemonProcess): PeerInfo {
  const line = d.logs().find((l) => l.msg === 'p2p node started');
  if (!line) throw new Error(`${d.host} logged no 'p2p node started'`);
  return { peerId: String(line.peerId), addrs: (line.addrs as string[]).map((a) => String(a).split('/p2p/')[0]!), cluster: String(line.cluster) };
}

/** A dialable multiaddr of the node, with its peer id. */
export function peerAddr(d: DaemonProcess): string {
  const info = peerInfo(d);
  return `${info.addrs[0]}/p2p/${info.peerId}`;
}

// ---- images -----------------------------------------------------------------------------------------


/** Bytes of config + layers: what one node fetches into its store for the image (manifests aside). */
export { blobsOf, fileDigest, storedBlobPath, waitStored } from '../fixtures/store-files.ts';
import { blobsOf, storedBlobPath } from '../fixtures/store-files.ts';

export function blobBytes(img: BuiltImage): number {
  return blobsOf(img).reduce((n, b) => n + b.size, 0);
}

/** Pulls the image through a node the way containerd does (every body verified by digest and size). */
export function pullVia(d: DaemonProcess, reg: Registry, repository: string, tag: string): Promise<PullResult> {
  return pullImage({ registryUrl: d.url, repository, tag, ns: reg.host, idleTimeoutMs: 30_000 });
}

// ---- metrics ----------------------------------------------------------------------------------------

/** Sum of the samples of `name` whose labels include `labels` (0 when there is none). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const pair of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) have[pair[1]!] = pair[2]!;
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

export interface P2PMetrics {
  fetched: { peer: number; seed: number; upstream: number };
  uploaded: number;
  uploadedOver: (transport: PeerTransport) => number;
  connected: number;
  quarantined: number;
  transfers: (direction: 'download' | 'upload', outcome?: string) => number;
  text: string;
}

export async function p2pMetrics(d: DaemonProcess): Promise<P2PMetrics> {
  const text = await d.metrics();
  const fetched = (source: string): number => metricValue(text, 'peerpull_bytes_fetched_total', { source });
  return {
    fetched: { peer: fetched('peer'), seed: fetched('seed'), upstream: fetched('upstream') },
    uploaded: metricValue(text, 'peerpull_peer_bytes_uploaded_total'),
    uploadedOver: (transport) => metricValue(text, 'peerpull_peer_bytes_uploaded_total', { transport }),
    connected: metricValue(text, 'peerpull_peers_connected'),
    quarantined: metricValue(text, 'peerpull_peers_quarantined'),
    transfers: (direction, outcome) => metricValue(text, 'peerpull_peer_transfers_total', outcome ? { direction, outcome } : { direction }),
    text,
  };
}

// ---- logs -------------------------------------------------------------------------------------------

export function logsWith(d: DaemonProcess, msg: string, match: Record<string, unknown> = {}): PeerpullLogLine[] {
  return d.logs().filter((l) => l.msg === msg && Object.entries(match).every(([k, v]) => l[k] === v));
}

export function timeOf(line: PeerpullLogLine): number {
  return new Date(String(line.time)).getTime();
}

/** Waits until the node logged 'provided' (debug) for each key: its DHT announcement went out. */
export async function waitProvided(d: DaemonProcess, keys: string[], timeoutMs = 10_000): Promise<void> {
  await waitUntil(`${d.host} to provide ${keys.length} keys`, () => {
    const provided = new Set(logsWith(d, 'provided').map((l) => String(l.key)));
    return keys.every((k) => provided.has(k));
  }, timeoutMs, 25);
}

// ---- the store --------------------------------------------------------------------------------------


/** Overwrites `length` bytes in the middle of a stored blob with other bytes; the size stays. */
export function corruptStoredBlob(dataDir: string, digest: string, length = 4096): void {
  const file = storedBlobPath(dataDir, digest);
  const size = fs.statSync(file).size;
  const at = Math.max(0, Math.floor(size / 2) - Math.floor(length / 2));
  const fd = fs.openSync(file, 'r+');
  try {
    const old = Buffer.alloc(Math.min(length, size - at));
    fs.readSync(fd, old, 0, old.length, at);
    const bad = Buffer.from(old.map((b) => b ^ 0xff));
    fs.writeSync(fd, bad, 0, bad.length, at);
  } finally {
    fs.closeSync(fd);
  }
  if (fs.statSync(file).size !== size) throw new Error('corrupting changed the size');
}

