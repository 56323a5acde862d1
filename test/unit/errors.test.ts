import { readFileSync } from 'node:fs';
import { ERROR_CODES } from '../../src/errors/codes.js';

test('every error code is documented in the README with its status', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  for (const [code, entry] of Object.entries(ERROR_CODES)) {
    expect(readme).toMatch(new RegExp(`\\| ${entry.status} \\| \`${code}\` \\|`));
  }
});
