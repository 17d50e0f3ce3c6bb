import { readFileSync } from 'node:fs';

export interface Credentials {
  username: string;
  password: string;
}

interface DockerConfigAuth {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

/**
 * Upstream credentials from a Docker `config.json` (`auths`), the same format as a
 * Kubernetes `kubernetes.io/dockerconfigjson` Secret (mounted: the file is its
 * `.dockerconfigjson` key; or the Secret manifest itself, JSON or YAML-as-JSON). A key may name
 * a repository prefix (`ghcr.io/myorg`): the longest matching prefix wins, then the host.
 * Secrets never leave this object except as Authorization headers to the registry they
 * belong to, and never appear in logs: describe() shows hosts and prefixes only.
 */
export class AuthFile {
  /** `host` or `host/repository-prefix` → credentials. */
  readonly #byKey = new Map<string, Credentials>();

  static load(path: string | undefined): AuthFile {
    const file = new AuthFile();
    if (!path) return file;
    let doc: { auths?: Record<string, DockerConfigAuth>; kind?: unknown; type?: unknown; data?: Record<string, string>; stringData?: Record<string, string> };
    try {
      doc = JSON.parse(readFileSync(path, 'utf8')) as typeof doc;
      if (doc.kind === 'Secret') {
        // The Secret manifest itself (kubectl get secret -o json).
        if (doc.type !== 'kubernetes.io/dockerconfigjson') throw new Error(`a Secret of type ${String(doc.type)}, expected kubernetes.io/dockerconfigjson`);
        const text = doc.stringData?.['.dockerconfigjson'] ?? Buffer.from(doc.data?.['.dockerconfigjson'] ?? '', 'base64').toString('utf8');
        doc = JSON.parse(text) as typeof doc;
      }
    } catch (err) {
      // The message of a JSON error quotes the text around it: never echo a credentials file.
      const why = err instanceof SyntaxError ? 'not valid JSON' : (err as Error).message;
      throw new Error(`cannot read auth file ${path}: ${why}`);
    }
    for (const [key, entry] of Object.entries(doc.auths ?? {})) {
      const creds = decode(entry);
      if (creds) file.#byKey.set(keyOf(key), creds);
    }
    return file;
  }

  /** Credentials for a registry, or for a repository of it (the longest matching `host/prefix` entry first). */
  get(registryHost: string, repository?: string): Credentials | undefined {
    const hosts = registryHost === 'docker.io' ? ['docker.io', 'index.docker.io', 'registry-1.docker.io'] : [registryHost];
    if (repository) {
      let best: { length: number; creds: Credentials } | undefined;
      for (const [key, creds] of this.#byKey) {
        for (const host of hosts) {
          const prefix = key.startsWith(`${host}/`) ? key.slice(host.length + 1) : undefined;
          if (prefix && (repository === prefix || repository.startsWith(`${prefix}/`)) && prefix.length > (best?.length ?? -1)) best = { length: prefix.length, creds };
        }
      }
      if (best) return best.creds;
    }
    for (const host of hosts) {
      const creds = this.#byKey.get(host);
      if (creds) return creds;
    }
    return undefined;
  }

  /** True when any credentials (for the host or a repository prefix of it) are configured: its content is private. */
  hasCredentialsFor(registryHost: string): boolean {
    const hosts = registryHost === 'docker.io' ? ['docker.io', 'index.docker.io', 'registry-1.docker.io'] : [registryHost];
    return [...this.#byKey.keys()].some((key) => hosts.some((h) => key === h || key.startsWith(`${h}/`)));
  }

  /** What is configured, without any secret: `host` and `host/prefix` keys. */
  describe(): string[] {
    return [...this.#byKey.keys()];
  }

  get size(): number {
    return this.#byKey.size;
  }
}

function decode(entry: DockerConfigAuth): Credentials | undefined {
  if (entry.username && entry.password) return { username: entry.username, password: entry.password };
  if (entry.auth) {
    const text = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = text.indexOf(':');
    if (colon > 0) return { username: text.slice(0, colon), password: text.slice(colon + 1) };
  }
  if (entry.identitytoken) return { username: '<token>', password: entry.identitytoken };
  return undefined;
}

/**
 * `https://index.docker.io/v1/` → `index.docker.io`; `ghcr.io` → `ghcr.io`; `ghcr.io/myorg/` →
 * `ghcr.io/myorg` (a repository prefix). Docker's legacy `/v1/` and `/v2/` paths are not prefixes.
 */
function keyOf(key: string): string {
  let host = key;
  let rest = '';
  try {
    if (key.includes('://')) {
      const url = new URL(key);
      host = url.host;
      rest = url.pathname;
    } else {
      const slash = key.indexOf('/');
      if (slash >= 0) {
        host = key.slice(0, slash);
        rest = key.slice(slash);
      }
    }
  } catch {
    return key;
  }
  const prefix = rest.replace(/^\/+|\/+$/g, '');
  return prefix === '' || prefix === 'v1' || prefix === 'v2' ? host.toLowerCase() : `${host.toLowerCase()}/${prefix}`;
}
