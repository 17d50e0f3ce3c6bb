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
 * Kubernetes `kubernetes.io/dockerconfigjson` Secret. Secrets never leave this object
 * except as Authorization headers to the registry they belong to.
 */
export class AuthFile {
  readonly #byHost = new Map<string, Credentials>();

  static load(path: string | undefined): AuthFile {
    const file = new AuthFile();
    if (!path) return file;
    let doc: { auths?: Record<string, DockerConfigAuth> };
    try {
      doc = JSON.parse(readFileSync(path, 'utf8')) as typeof doc;
    } catch (err) {
      throw new Error(`cannot read auth file ${path}: ${(err as Error).message}`);
    }
    for (const [key, entry] of Object.entries(doc.auths ?? {})) {
      const creds = decode(entry);
      if (creds) file.#byHost.set(hostOf(key), creds);
    }
    return file;
  }

  get(registryHost: string): Credentials | undefined {
    return this.#byHost.get(registryHost) ?? (registryHost === 'docker.io' ? this.#byHost.get('index.docker.io') : undefined);
  }

  get size(): number {
    return this.#byHost.size;
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

/** `https://index.docker.io/v1/` → `index.docker.io`; `ghcr.io` → `ghcr.io`. */
function hostOf(key: string): string {
  try {
    return key.includes('://') ? new URL(key).host : key.replace(/\/.*$/, '');
  } catch {
    return key;
  }
}
