import { MIRROR_OPTIONS, peerOptions, type OptionSpecs } from '@peerpull/common';

export const DAEMON_OPTIONS = {
  listen: { type: 'string', description: 'Address of the registry mirror containerd talks to', default: '127.0.0.1:5050', placeholder: 'HOST:PORT' },
  data: { type: 'string', description: 'Directory for the content store and metadata', default: '/var/lib/peerpull', placeholder: 'DIR' },
  seed: { type: 'list', description: 'Cluster seed to resolve tags and fetch blobs through, e.g. http://peerpull-seed:5060', default: [], placeholder: 'URL' },
  'seed-timeout': { type: 'duration', description: 'Deadline to connect to a seed before the daemon goes to the upstream directly (a connected seed gets the upstream timeout plus this to answer)', default: '2s' },
  'cache-size': { type: 'size', description: 'Evict least-recently-used content above this size', default: '20GiB' },
  'tag-ttl': { type: 'duration', description: 'Serve a cached tag this long before revalidating it upstream', default: '5m' },
  'max-stale': { type: 'duration', description: 'While every source fails, serve a cached tag up to this long after it was last validated', default: 'forever' },
  'metrics-listen': { type: 'string', description: 'Address for Prometheus /metrics ("" to disable)', default: '0.0.0.0:5080', placeholder: 'HOST:PORT' },
  ...MIRROR_OPTIONS,
  ...peerOptions(5070),
  'peer-upload-limit': { type: 'integer', description: 'Concurrent uploads to other nodes before answering "busy" (spreads a burst as a tree)', default: 4 },
  'peer-upload-limit-per-peer': {
    type: 'integer',
    description: 'Concurrent uploads to one node, even when it insists past "busy" (one pull fetches 3 blobs at once)',
    default: 3,
  },
  'peer-lookup-timeout': { type: 'duration', description: 'Budget to find a peer holding a blob before asking the seed', default: '300ms' },
  'peer-lookup-last-resort': {
    type: 'duration',
    description: 'When the seed and the upstream both failed (an offline site), look for a peer this long once more before answering 404 (0: no second lookup; a clean 404 upstream never waits)',
    default: '2s',
  },
  'peer-transport': {
    type: 'string',
    description: 'How this node fetches blobs from peers: libp2p (noise-encrypted streams) or http (the HTTP data plane of peers that serve one: cluster-key authenticated, not encrypted, trusted networks only; other peers over libp2p)',
    default: 'libp2p',
    choices: ['libp2p', 'http'],
  },
  'peer-http-listen': {
    type: 'string',
    description: 'Serve blobs to peers over HTTP on this address (e.g. 0.0.0.0:5072): cluster-key authenticated, not encrypted; "" does not serve it',
    default: '',
    placeholder: 'HOST:PORT',
  },
  'peer-idle-timeout': { type: 'duration', description: 'A peer that sends no bytes for this long is dropped and the transfer resumes elsewhere', default: '3s' },
  'node-name': { type: 'string', description: 'This node\'s name in the seed\'s pull log and dashboard (Kubernetes: the node name from the downward API; default: the host name)', placeholder: 'NAME' },
  'report-interval': { type: 'duration', description: 'How often completed pulls (and, every 5 s, a heartbeat) are sent to the seeds in the background; 0 turns reporting off', default: '1s' },
  'manage-containerd': {
    type: 'boolean',
    description: 'Fail open: write containerd mirror entries (hosts.toml) while this daemon is ready; remove them when it is not, or is stopping',
    default: false,
  },
  'containerd-config-path': { type: 'string', description: 'containerd\'s hosts directory (config_path) for --manage-containerd', default: '/etc/containerd/certs.d', placeholder: 'DIR' },
  'manage-registries': {
    type: 'list',
    description: 'Registries --manage-containerd writes entries for: host, host=upstream-url or _default (none: the --registry list)',
    default: [],
    placeholder: 'HOST[=URL]',
  },
  'manage-interval': { type: 'duration', description: 'How often --manage-containerd checks the daemon\'s readiness', default: '2s' },
} as const satisfies OptionSpecs;
