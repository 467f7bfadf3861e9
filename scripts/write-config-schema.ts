// Writes config.schema.json, and the key reference tables of README.md, from src/config/schema.ts:
// `npm run schema` after changing the schema.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { configJsonSchema } from '../src/config/json-schema.js';
import { writeReference } from '../src/config/reference.js';

const file = fileURLToPath(new URL('../config.schema.json', import.meta.url));
writeFileSync(file, configJsonSchema());
// In the repository's own format, so `npm run lint` passes on it.
execFileSync('npx', ['biome', 'format', '--write', file], { stdio: 'inherit' });

const readme = fileURLToPath(new URL('../README.md', import.meta.url));
const before = readFileSync(readme, 'utf8');
const after = writeReference(before);
if (after !== before) writeFileSync(readme, after);
