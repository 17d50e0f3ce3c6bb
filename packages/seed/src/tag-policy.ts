import { isDigest, parseDuration, parseImageReference, type Digest, type ManifestLocator, type TagPolicy } from '@peerpull/common';

interface PolicyRule {
  pattern: RegExp;
  ttlMs?: number;
  maxStaleMs?: number;
}

/**
 * Tag policy per registry/repository: TTL, how long to serve stale, and pinned tags.
 * Rules match `registry/repository` with `*` as a wildcard; the first match wins.
 */
export class TagPolicies {
  readonly #rules: PolicyRule[];
  readonly #pins: Map<string, Digest>;
  readonly #defaults: TagPolicy;

  constructor(defaults: TagPolicy, rules: PolicyRule[] = [], pins = new Map<string, Digest>()) {
    this.#defaults = defaults;
    this.#rules = rules;
    this.#pins = pins;
  }

  /** Validates the `policies` and `pins` config values; errors name the offending entry. */
  static fromConfig(defaults: TagPolicy, policies: unknown, pins: unknown): TagPolicies {
    const rules: PolicyRule[] = [];
    if (policies !== undefined && policies !== null) {
      if (!Array.isArray(policies)) throw new Error('policies: expected a list of {match, tag-ttl, max-stale}');
      policies.forEach((entry: unknown, i) => {
        if (typeof entry !== 'object' || entry === null) throw new Error(`policies[${i}]: expected a mapping`);
        const { match, 'tag-ttl': ttl, 'max-stale': maxStale, ...rest } = entry as Record<string, unknown>;
        const unknown = Object.keys(rest);
        if (unknown.length) throw new Error(`policies[${i}]: unknown key "${unknown[0]}" (known: match, tag-ttl, max-stale)`);
        if (typeof match !== 'string' || !match) throw new Error(`policies[${i}].match: expected a pattern like "docker.io/library/*"`);
        const rule: PolicyRule = { pattern: globToRegExp(match) };
        try {
          if (ttl !== undefined) rule.ttlMs = parseDuration(ttl as string);
          if (maxStale !== undefined) rule.maxStaleMs = parseDuration(maxStale as string);
        } catch (err) {
          throw new Error(`policies[${i}]: ${(err as Error).message}`);
        }
        rules.push(rule);
      });
    }
    const pinMap = new Map<string, Digest>();
    if (pins !== undefined && pins !== null) {
      if (typeof pins !== 'object' || Array.isArray(pins)) throw new Error('pins: expected a mapping of image:tag to sha256 digest');
      for (const [image, digest] of Object.entries(pins as Record<string, unknown>)) {
        const ref = parseImageReference(image);
        if (typeof digest !== 'string' || !isDigest(digest)) throw new Error(`pins["${image}"]: expected a sha256 digest`);
        pinMap.set(`${ref.registry}/${ref.repository}:${ref.tag}`, digest);
      }
    }
    return new TagPolicies(defaults, rules, pinMap);
  }

  policy(locator: ManifestLocator, tag: string): TagPolicy {
    const name = `${locator.registry.host}/${locator.repository}`;
    const rule = this.#rules.find((r) => r.pattern.test(name));
    const policy: TagPolicy = { ttlMs: rule?.ttlMs ?? this.#defaults.ttlMs, maxStaleMs: rule?.maxStaleMs ?? this.#defaults.maxStaleMs };
    const pinned = this.#pins.get(`${name}:${tag}`);
    if (pinned) policy.pinned = pinned;
    return policy;
  }
}

function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
}
