import { DEFAULT_REGISTRIES, LOG_LEVELS, peerOptions, type OptionSpecs } from '@peerpull/common';

export const DAEMON_OPTIONS = {
  listen: { type: 'string', description: 'Address of the registry mirror containerd talks to', default: '127.0.0.1:5050', placeholder: 'HOST:PORT' },
  data: { type: 'string', description: 'Directory for the content store and metadata', default: '/var/lib/peerpull', placeholder: 'DIR' },
  registry: { type: 'list', description: 'Upstream registry the mirror may contact, as host or host=endpoint-url; replaces the default list', default: DEFAULT_REGISTRIES, placeholder: 'HOST[=URL]' },
  'default-registry': { type: 'string', description: 'Registry for requests without ?ns= (must be in --registry)', default: 'docker.io', placeholder: 'HOST' },
  seed: { type: 'list', description: 'Cluster seed to resolve tags and fetch blobs through, e.g. http://peerpull-seed:5060', default: [], placeholder: 'URL' },
  'seed-timeout': { type: 'duration', description: 'Deadline for a seed to answer before the daemon goes to the upstream directly', default: '2s' },
  'auth-file': { type: 'string', description: 'Docker config.json with upstream credentials (auths)', placeholder: 'FILE' },
  'cache-size': { type: 'size', description: 'Evict least-recently-used content above this size', default: '20GiB' },
  'tag-ttl': { type: 'duration', description: 'Serve a cached tag this long before revalidating it upstream', default: '5m' },
  'max-stale': { type: 'duration', description: 'Serve a cached tag this long past its TTL while the upstream fails', default: 'forever' },
  'metrics-listen': { type: 'string', description: 'Address for Prometheus /metrics ("" to disable)', default: '0.0.0.0:5080', placeholder: 'HOST:PORT' },
  'upstream-connect-timeout': { type: 'duration', description: 'Deadline to connect to an upstream', default: '3s' },
  'upstream-timeout': { type: 'duration', description: 'Deadline for an upstream to start answering, and for a whole manifest request', default: '10s' },
  'upstream-idle-timeout': { type: 'duration', description: 'A blob transfer with no bytes for this long is broken off and resumed', default: '15s' },
  ...peerOptions(5070),
  'peer-upload-limit': { type: 'integer', description: 'Concurrent uploads to other nodes before answering "busy" (spreads a burst as a tree)', default: 4 },
  'peer-lookup-timeout': { type: 'duration', description: 'Budget to find a peer holding a blob before asking the seed', default: '300ms' },
  'peer-idle-timeout': { type: 'duration', description: 'A peer that sends no bytes for this long is dropped and the transfer resumes elsewhere', default: '3s' },
  'log-level': { type: 'string', description: 'Log level', default: 'info', choices: LOG_LEVELS, placeholder: 'LEVEL' },
} as const satisfies OptionSpecs;
