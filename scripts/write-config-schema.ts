// Writes config.schema.json from src/config/schema.ts: `npm run schema` after changing the schema.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { configJsonSchema } from '../src/config/json-schema.js';

const file = fileURLToPath(new URL('../config.schema.json', import.meta.url));
writeFileSync(file, configJsonSchema());
// In the repository's own format, so `npm run lint` passes on it.
execFileSync('npx', ['biome', 'format', '--write', file], { stdio: 'inherit' });
