import type { OptionSpecs } from '@peerpull/common/options';

/** Options the operator commands share; env names match the daemon's and the seed's own options. */
export const DAEMON_URL_OPTION = {
  daemon: {
    type: 'string',
    description: 'The daemon\'s mirror URL; its admin API answers loopback clients only, so run this on the node ("" to skip the daemon)',
    default: 'http://127.0.0.1:5050',
    placeholder: 'URL',
  },
} as const satisfies OptionSpecs;

export const SEED_URL_OPTIONS = {
  seed: { type: 'list', description: 'The seed\'s URL, e.g. http://peerpull-seed:5060 (the first one is used)', default: [], placeholder: 'URL' },
  'admin-token': { type: 'string', description: 'The seed\'s admin token, when it has one', placeholder: 'TOKEN' },
} as const satisfies OptionSpecs;

export const JSON_OPTION = {
  json: { type: 'boolean', description: 'Print JSON (for scripts) instead of text', default: false },
} as const satisfies OptionSpecs;
