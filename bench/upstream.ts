/**
 * The bench upstream's process, forked by bench/main.ts: reports its port over
 * IPC (or prints it when run alone). With `--paced`, the long-stream
 * profile's raw-socket upstream (paced-upstream.ts) instead of the http one;
 * asked `{ lateness: true }` over IPC, it answers how late its paced chunks
 * left since the last such question (PacingReport), so the bench can tell
 * when the upstream itself could not keep up.
 */
import { createHistogram } from 'node:perf_hooks';
import { listen } from '../src/http/listen.js';
import { SERVER_LIMITS } from '../src/http/server.js';
import { createPacedUpstream } from './paced-upstream.js';
import type { PacingReport } from './processes.js';
import { createBenchUpstream } from './upstream-server.js';

// Microseconds, as HDR histograms take whole numbers; a chunk that left early counts as on time.
const lateness = createHistogram();
const server = process.argv.includes('--paced')
  ? createPacedUpstream({ onLateness: (ms) => lateness.record(Math.max(1, Math.round(ms * 1000))) })
  : createBenchUpstream();
// Listening as the gateway does (several sockets, each accepting one connection per loop turn), so that
// the load generator's own accept queue is not what a hop's first byte waits for.
const { port } = (await listen(server, { port: 0, host: '127.0.0.1', backlog: 1024, acceptors: SERVER_LIMITS.acceptors })).address;
if (process.send !== undefined) process.send({ port });
else console.log(`bench upstream on http://127.0.0.1:${port}`);
process.on('message', (message: { lateness?: boolean }) => {
  if (message.lateness !== true || process.send === undefined) return;
  const chunks = lateness.count;
  const ms = (us: number): number => (chunks === 0 ? Number.NaN : us / 1000);
  const report: PacingReport = { chunks, p50Ms: ms(lateness.percentile(50)), p99Ms: ms(lateness.percentile(99)), maxMs: ms(lateness.max) };
  lateness.reset();
  process.send({ pacing: report });
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
