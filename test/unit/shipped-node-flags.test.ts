/**
 * The node flags the gateway ships with (the Dockerfile's CMD) are the ones
 * `npm start` uses and the bench starts its gateway with, so what is measured
 * is what runs.
 */
import { readFileSync } from 'node:fs';
import { shippedNodeFlags } from '../../bench/processes.js';

const dockerfile = readFileSync('Dockerfile', 'utf8');

test("the image's CMD carries the young-generation cap, and npm start the same flags", () => {
  const flags = shippedNodeFlags(dockerfile);
  expect(flags).toEqual(['--max-semi-space-size=8']);
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> };
  expect(pkg.scripts['start']).toBe(['node', ...flags, 'dist/main.js'].join(' '));
});

test('the last CMD counts; one that is not node with a script is refused', () => {
  expect(shippedNodeFlags('FROM x\nCMD ["node", "a.js"]\nCMD ["node", "--x", "--y=1", "b.js"]\n')).toEqual(['--x', '--y=1']);
  expect(() => shippedNodeFlags('FROM x\n')).toThrow('no CMD');
  expect(() => shippedNodeFlags('CMD ["sh", "-c", "node a.js"]\n')).toThrow('no CMD');
  expect(() => shippedNodeFlags('CMD ["node"]\n')).toThrow('no CMD');
});
