import { DEFAULT_REGISTRIES, LOG_LEVELS, peerOptions, type OptionSpecs } from '@peerpull/common';

export const SEED_OPTIONS = {
  listen: { type: 'string', description: 'Address of the seed registry and admin API (a cluster service)', default: '0.0.0.0:5060', placeholder: 'HOST:PORT' },
  data: { type: 'string', description: 'Directory for the seed cache; persists across restarts', default: '/var/lib/peerpull-seed', placeholder: 'DIR' },
  registry: { type: 'list', description: 'Upstream registry the seed may contact, as host or host=endpoint-url; replaces the default list', default: DEFAULT_REGISTRIES, placeholder: 'HOST[=URL]' },
  'default-registry': { type: 'string', description: 'Registry for requests without ?ns= (must be in --registry)', default: 'docker.io', placeholder: 'HOST' },
  'auth-file': { type: 'string', description: 'Docker config.json with upstream credentials (auths)', placeholder: 'FILE' },
  'cache-size': { type: 'size', description: 'Evict least-recently-used content above this size', default: '100GiB' },
  'tag-ttl': { type: 'duration', description: 'How long a tag resolves to one digest cluster-wide before it is revalidated upstream', default: '5m' },
  'max-stale': { type: 'duration', description: 'While the upstream fails, serve a cached tag up to this long after it was last validated', default: 'forever' },
  policies: {
    type: 'structured',
    description: 'Per-registry/repository tag policy, first match wins: a list of {match: "docker.io/library/*", tag-ttl, max-stale}',
    placeholder: 'LIST',
  },
  pins: { type: 'structured', description: 'Tags pinned to a digest forever: a mapping {"docker.io/library/nginx:1.27": "sha256:..."}', placeholder: 'MAP' },
  'admin-token': { type: 'string', description: 'Bearer token required by the admin API under /api/v1/ (none: open)', placeholder: 'TOKEN' },
  'metrics-listen': { type: 'string', description: 'Address for Prometheus /metrics ("" to disable)', default: '0.0.0.0:5081', placeholder: 'HOST:PORT' },
  'upstream-connect-timeout': { type: 'duration', description: 'Deadline to connect to an upstream', default: '3s' },
  'upstream-timeout': { type: 'duration', description: 'Deadline for an upstream to start answering, and for a whole manifest request', default: '10s' },
  'upstream-idle-timeout': { type: 'duration', description: 'A blob transfer with no bytes for this long is broken off and resumed', default: '15s' },
  'client-timeout': { type: 'duration', description: 'Deadline for a client to send a whole request, headers and body; slower clients (slow-loris) are disconnected', default: '30s' },
  ...peerOptions(5071),
  'pull-log-retention': { type: 'duration', description: 'How long the pull audit log keeps a record of a pull', default: '7d' },
  'pull-log-max-entries': { type: 'integer', description: 'Records the pull audit log keeps at most (the oldest are deleted first)', default: 200000 },
  'peer-fanout': { type: 'integer', description: 'Daemons that download one blob from the seed at once; the rest get it from them over P2P', default: 2 },
  'log-level': { type: 'string', description: 'Log level', default: 'info', choices: LOG_LEVELS, placeholder: 'LEVEL' },
} as const satisfies OptionSpecs;
