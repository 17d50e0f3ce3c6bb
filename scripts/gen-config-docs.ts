// Regenerates docs/configuration.md from the option definitions.
import { writeFileSync } from 'node:fs';
import { renderConfigDocs } from '../packages/cli/src/config-docs.ts';

writeFileSync(new URL('../docs/configuration.md', import.meta.url), renderConfigDocs());
