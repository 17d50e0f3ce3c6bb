import { LOG_LEVELS } from './logger.ts';
import type { OptionSpecs } from './options.ts';
import { DEFAULT_REGISTRIES } from './registry-allowlist.ts';

/** The upstream, credential, deadline and logging options the daemon and the seed share. */
export const MIRROR_OPTIONS = {
  registry: { type: 'list', description: 'Upstream registry this node may contact, as host or host=endpoint-url; replaces the default list', default: DEFAULT_REGISTRIES, placeholder: 'HOST[=URL]' },
  'default-registry': { type: 'string', description: 'Registry for requests without ?ns= (must be in --registry)', default: 'docker.io', placeholder: 'HOST' },
  'auth-file': { type: 'string', description: 'Docker config.json or kubernetes.io/dockerconfigjson Secret with upstream credentials (auths; keys may be host/repository-prefix); what they fetch is private', placeholder: 'FILE' },
  'private-recheck-interval': { type: 'duration', description: 'Private content is served under a repository only while the upstream confirms the repository holds it: re-checked this often', default: '5m' },
  'private-offline-grace': { type: 'duration', description: 'While the upstream cannot be asked, private content checked within this long keeps being served', default: '1h' },
  'upstream-connect-timeout': { type: 'duration', description: 'Deadline to connect to an upstream', default: '3s' },
  'upstream-timeout': { type: 'duration', description: 'Deadline for an upstream to start answering, and for a whole manifest request', default: '10s' },
  'upstream-idle-timeout': { type: 'duration', description: 'A blob transfer with no bytes for this long is broken off and resumed', default: '15s' },
  'client-timeout': { type: 'duration', description: 'Deadline for a client to send a whole request, headers and body; slower clients (slow-loris) are disconnected', default: '30s' },
  'log-level': { type: 'string', description: 'Log level', default: 'info', choices: LOG_LEVELS, placeholder: 'LEVEL' },
} as const satisfies OptionSpecs;
