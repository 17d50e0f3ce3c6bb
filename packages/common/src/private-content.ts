import { appendFile, readFile, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { isDigest, type Digest } from './digest.ts';
import { manifestReferences } from './manifest-references.ts';
import { OciError } from './oci-error.ts';
import type { UpstreamRegistry } from './registry-allowlist.ts';

export type AccessKind = 'blob' | 'manifest';
/** What the upstream said when asked whether a repository holds a digest (with that repository's credentials). */
export type Verdict = 'yes' | 'no' | 'unknown';

/** The pull API's hook: may this digest be served under this repository? (see RegistryApiOptions.access) */
export interface ContentAccess {
  /** Resolves when the digest may be served under (registry, repository); throws OciError 404 when not. */
  authorize(kind: AccessKind, registry: UpstreamRegistry, repository: string, digest: Digest): Promise<void>;
  /** A manifest was served under (registry, repository): it and everything it references belong to that repository. */
  recordManifest(registry: UpstreamRegistry, repository: string, manifest: { digest: Digest; mediaType: string; body: Buffer }): Promise<void>;
}

export interface PrivateContentOptions {
  /** The data dir: the index is `private-content.jsonl` in it. */
  dir: string;
  /** Registries for which this node holds credentials: what it fetches from them is private. */
  isPrivateRegistry: (host: string) => boolean;
  /** Asks the upstream, with the repository's own credentials, whether it holds the digest (a HEAD). */
  verify: (kind: AccessKind, registry: UpstreamRegistry, repository: string, digest: Digest) => Promise<Verdict>;
  logger: Logger;
  /** A repository's claim to a digest is re-checked upstream after this long (revoked access takes effect). */
  recheckMs?: number;
  /** While the upstream cannot be asked, a claim checked within this long before keeps serving. */
  offlineGraceMs?: number;
  now?: () => number;
}

interface Line {
  d: string;
  r: string;
}

/**
 * Private content: what this node fetched from a registry it holds credentials for. containerd sends
 * a mirror no credentials, so the node cannot know which pod asks; what it can enforce is the
 * registry's own rule that a digest is pulled *through a repository that holds it*:
 *
 * - a private digest is served under `registry/repository` only if a manifest of that repository
 *   (served by this node) referenced it, or the upstream confirms, with that repository's credentials,
 *   that the repository holds it (a HEAD); otherwise 404, whatever the cache holds. Guessing a private
 *   layer's digest under a public name, or under another registry, gets nothing from the cache;
 * - a claim is re-checked upstream every `recheckMs` (default 5 min), so revoked credentials or a
 *   deleted repository stop cached content from being served; while the upstream cannot be asked, a
 *   claim checked within `offlineGraceMs` (default 1 h) keeps serving (a bounded offline grace);
 * - the index of claims survives restarts (a JSON-lines file in the data dir): a cached private blob
 *   never becomes public by a restart.
 *
 * Content of registries without credentials was fetched anonymously: it is public and unaffected.
 */
export class PrivateContentGuard implements ContentAccess {
  readonly #opts: Required<Omit<PrivateContentOptions, 'now'>> & { now: () => number };
  readonly #file: string;
  /**
   * digest → `registry/repository` → when the claim was last confirmed (0: recorded, never re-checked since start).
   * Claims outlive the blobs' eviction on purpose: a request for a private digest under another repository
   * is then still checked upstream before any source (a peer, the seed) is asked for the bytes.
   */
  readonly #claims = new Map<string, Map<string, number>>();

  private constructor(opts: PrivateContentOptions) {
    this.#opts = { recheckMs: 5 * 60_000, offlineGraceMs: 60 * 60_000, now: Date.now, ...opts };
    this.#file = join(opts.dir, 'private-content.jsonl');
  }

  static async open(opts: PrivateContentOptions): Promise<PrivateContentGuard> {
    const guard = new PrivateContentGuard(opts);
    let text = '';
    try {
      text = await readFile(guard.#file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const now = guard.#opts.now();
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        const { d, r } = JSON.parse(line) as Line;
        // Loaded claims count as checked at start-up minus the re-check interval: the first request re-checks.
        if (isDigest(d) && typeof r === 'string') guard.#claim(d, r, now - guard.#opts.recheckMs);
      } catch {
        // a torn last line after a crash: ignore it
      }
    }
    // Compact: one line per claim.
    const lines = [...guard.#claims].flatMap(([d, repos]) => [...repos.keys()].map((r) => JSON.stringify({ d, r })));
    await writeFile(`${guard.#file}.tmp`, lines.length ? `${lines.join('\n')}\n` : '');
    await rename(`${guard.#file}.tmp`, guard.#file);
    opts.logger.info({ digests: guard.#claims.size }, 'private content index loaded');
    return guard;
  }

  /** True when the digest was fetched for a private repository. */
  isPrivate(digest: string): boolean {
    return this.#claims.has(digest);
  }

  async authorize(kind: AccessKind, registry: UpstreamRegistry, repository: string, digest: Digest): Promise<void> {
    const repos = this.#claims.get(digest);
    if (!repos && !this.#opts.isPrivateRegistry(registry.host)) return; // public content of a public registry
    const key = `${registry.host}/${repository}`;
    const now = this.#opts.now();
    const checkedAt = repos?.get(key);
    if (checkedAt !== undefined && now - checkedAt < this.#opts.recheckMs) return;
    const verdict = await this.#opts.verify(kind, registry, repository, digest);
    if (verdict === 'yes') {
      await this.#record(digest, key, checkedAt === undefined);
      return;
    }
    if (verdict === 'unknown' && checkedAt !== undefined && now - checkedAt < this.#opts.recheckMs + this.#opts.offlineGraceMs) {
      this.#opts.logger.debug({ digest, repository: key }, 'upstream unreachable: serving a private digest within its offline grace');
      return;
    }
    if (verdict === 'no' && checkedAt !== undefined) {
      repos?.delete(key); // (the file keeps the line until the next start; the re-check refuses it again)
      this.#opts.logger.warn({ digest, repository: key }, 'upstream no longer grants this repository the digest: no longer served under it');
    }
    const code = kind === 'blob' ? 'BLOB_UNKNOWN' : 'MANIFEST_UNKNOWN';
    const why = verdict === 'unknown' ? 'the upstream could not confirm it' : 'the upstream does not grant it';
    throw new OciError(404, code, `${kind} ${digest} is not known in ${key}: ${why}`);
  }

  async recordManifest(registry: UpstreamRegistry, repository: string, manifest: { digest: Digest; mediaType: string; body: Buffer }): Promise<void> {
    if (!this.#opts.isPrivateRegistry(registry.host) && !this.#claims.has(manifest.digest)) return;
    const key = `${registry.host}/${repository}`;
    const digests: Digest[] = [manifest.digest];
    try {
      const refs = manifestReferences(manifest.body, manifest.mediaType);
      digests.push(...refs.manifests.map((m) => m.digest), ...refs.blobs.map((b) => b.digest));
    } catch {
      // not JSON we understand: only the manifest itself
    }
    for (const d of digests) await this.#record(d, key, !this.#claims.get(d)?.has(key));
  }

  #claim(digest: string, key: string, at: number): void {
    let repos = this.#claims.get(digest);
    if (!repos) this.#claims.set(digest, (repos = new Map()));
    repos.set(key, at);
  }

  async #record(digest: string, key: string, persist: boolean): Promise<void> {
    this.#claim(digest, key, this.#opts.now());
    if (!persist) return;
    try {
      await appendFile(this.#file, `${JSON.stringify({ d: digest, r: key })}\n`);
    } catch (err) {
      // (a full disk): the claim holds in memory; after a restart it is re-checked upstream (the safe side).
      this.#opts.logger.warn({ err: (err as Error).message }, 'could not persist a private content claim');
    }
  }
}
