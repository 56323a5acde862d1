import { startExampleUpstream } from './example-upstream.js';

/**
 * The example upstream as a process of its own: `node dist/demo/example-upstream-main.js`, the
 * `upstream` service of compose.yaml. It listens on all interfaces so that other containers reach
 * it by service name, on PORT (compose.yaml sets 8080; the image's PORT is the gateway's).
 */
async function main(): Promise<void> {
  const raw = process.env['PORT'] ?? '';
  const port = raw === '' ? Number.NaN : Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new Error(`PORT must be a port number, got '${raw}'`);
  const { server } = await startExampleUpstream(port, '0.0.0.0');
  const address = server.address();
  const bound = typeof address === 'object' && address !== null ? address.port : port;
  process.stdout.write(`example upstream listening on 0.0.0.0:${bound}\n`);

  // As PID 1 in a container, node gets no default SIGTERM action: without a handler `docker compose
  // stop` would wait its whole grace period and then kill. close() ends the keep-alive connections
  // idle at that moment; one busy with an answer (a stream) is ended when it turns idle, so answers
  // in flight finish and the process exits right after.
  const stop = (): void => {
    server.close(() => process.exit(0));
    setInterval(() => server.closeIdleConnections(), 50).unref();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((error: unknown) => {
  process.stderr.write(`example upstream failed: ${(error as Error).message}\n`);
  process.exit(1);
});
