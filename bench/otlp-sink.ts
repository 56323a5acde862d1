import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The cheapest collector there is, for the tracing rows: takes OTLP/HTTP
 * posts and answers 200 with an empty (valid) export response, counting
 * bytes, so the gateway's exporter costs what it would against a quick
 * collector.
 */
export async function startOtlpSink(): Promise<{ url: string; posts(): number; bytes(): number; close(): Promise<void> }> {
  let posts = 0;
  let bytes = 0;
  const server = createServer((req, res) => {
    req.on('data', (chunk: Buffer) => (bytes += chunk.length));
    req.on('end', () => {
      posts++;
      res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': 0 });
      res.end();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    posts: () => posts,
    bytes: () => bytes,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
