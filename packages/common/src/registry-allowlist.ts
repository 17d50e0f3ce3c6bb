import { DOCKER_HUB, isRegistryHost } from './reference.ts';

/** An upstream registry the mirror may contact, and the endpoint it talks to. */
export interface UpstreamRegistry {
  /** The name clients use: `docker.io`, `ghcr.io`, `127.0.0.1:5001`. */
  host: string;
  /** Where requests go: `https://registry-1.docker.io`. */
  endpoint: URL;
}

export const DEFAULT_REGISTRIES = [
  'docker.io',
  'ghcr.io',
  'quay.io',
  'registry.k8s.io',
  'gcr.io',
  'public.ecr.aws',
  'mcr.microsoft.com',
];

const WELL_KNOWN_ENDPOINTS: Record<string, string> = {
  'docker.io': 'https://registry-1.docker.io',
};

/**
 * The set of registries the mirror will contact. `ns` is user input: anything not listed
 * here is refused before any connection is made, so the mirror is never an open proxy.
 */
export class RegistryAllowlist {
  readonly #registries = new Map<string, UpstreamRegistry>();

  /** Entries are `host` or `host=endpoint-url`. */
  constructor(entries: readonly string[]) {
    for (const entry of entries) {
      const registry = parseRegistryEntry(entry);
      this.#registries.set(registry.host, registry);
    }
  }

  /** The registry for a client-supplied name, or undefined if it is not allowed. Exact match only. */
  lookup(host: string): UpstreamRegistry | undefined {
    const name = host === 'index.docker.io' || host === 'registry-1.docker.io' ? DOCKER_HUB : host;
    return this.#registries.get(name);
  }

  /** The registry whose endpoint is this URL's origin (used to check redirects and token realms). */
  hosts(): string[] {
    return [...this.#registries.keys()];
  }

  list(): UpstreamRegistry[] {
    return [...this.#registries.values()];
  }
}

export function parseRegistryEntry(entry: string): UpstreamRegistry {
  const eq = entry.indexOf('=');
  const host = (eq >= 0 ? entry.slice(0, eq) : entry).trim();
  if (!isRegistryHost(host)) throw new Error(`invalid registry "${host}": expected a lower-case host[:port]`);
  const endpointText = eq >= 0 ? entry.slice(eq + 1).trim() : (WELL_KNOWN_ENDPOINTS[host] ?? `https://${host}`);
  let endpoint: URL;
  try {
    endpoint = new URL(endpointText);
  } catch {
    throw new Error(`invalid endpoint for registry "${host}": ${endpointText}`);
  }
  if (endpoint.protocol !== 'https:' && endpoint.protocol !== 'http:') {
    throw new Error(`invalid endpoint for registry "${host}": only http and https are supported`);
  }
  endpoint.pathname = endpoint.pathname.replace(/\/+$/, '');
  return { host, endpoint };
}
