import { MIRROR_OPTIONS, peerOptions, type OptionSpecs } from '@peerpull/common';

export const SEED_OPTIONS = {
  listen: { type: 'string', description: 'Address of the seed registry and admin API (a cluster service)', default: '0.0.0.0:5060', placeholder: 'HOST:PORT' },
  data: { type: 'string', description: 'Directory for the seed cache; persists across restarts', default: '/var/lib/peerpull-seed', placeholder: 'DIR' },
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
  ...MIRROR_OPTIONS,
  ...peerOptions(5071),
  'pull-log-retention': { type: 'duration', description: 'How long the pull audit log keeps a record of a pull', default: '7d' },
  'pull-log-max-entries': { type: 'integer', description: 'Records the pull audit log keeps at most (the oldest are deleted first)', default: 200000 },
  'peer-fanout': { type: 'integer', description: 'Daemons that download one blob from the seed at once; the rest get it from them over P2P', default: 2 },
} as const satisfies OptionSpecs;
