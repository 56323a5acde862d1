/** The bench upstream's process, forked by bench/main.ts: reports its port over IPC (or prints it when run alone). */
import type { AddressInfo } from 'node:net';
import { createBenchUpstream } from './upstream-server.js';

const server = createBenchUpstream();
server.listen(0, '127.0.0.1', () => {
  const port = (server.address() as AddressInfo).port;
  if (process.send !== undefined) process.send({ port });
  else console.log(`bench upstream on http://127.0.0.1:${port}`);
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
