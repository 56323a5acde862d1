/**
 * A same-run reference point for the long-stream profile, not a proxy to
 * run: about the least one Node.js process can do to relay an event stream.
 * Each client connection gets its own upstream connection, and bytes are
 * copied across as they come, both ways: no HTTP parsing, no keys, no
 * transforms. Like the gateway, it reads the upstream without Node's stream
 * machinery (`onread`) and lets a turn's writes leave together (the
 * gateway's own `corkForTurn`), and it listens as the gateway does (its own
 * `listen`, several sockets accepting). What this
 * pipe adds to time to first byte and to the gaps between events on a
 * machine, a gateway in Node.js adds at least.
 */
import { connect, createServer, type Socket } from 'node:net';
import { listen } from '../src/http/listen.js';
import { SERVER_LIMITS } from '../src/http/server.js';
import { corkForTurn } from '../src/io/turn-end.js';

const upstream = new URL(process.argv[2]!);
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

function relay(client: Socket, head: Buffer): void {
  const toUpstream = connect({
    host: upstream.hostname,
    port: Number(upstream.port),
    noDelay: true,
    onread: {
      buffer: READ_BUFFER,
      callback: (length: number, buffer: Uint8Array): boolean => {
        corkForTurn(client);
        if (!client.write(Buffer.copyBytesFrom(buffer, 0, length))) {
          toUpstream.pause();
          client.once('drain', () => toUpstream.resume());
        }
        return true;
      },
    },
  });
  toUpstream.write(head);
  client.pipe(toUpstream);
  toUpstream.on('end', () => client.end());
  toUpstream.on('error', () => client.destroy());
  client.on('error', () => toUpstream.destroy());
  client.on('close', () => toUpstream.destroy());
}

const server = createServer({ noDelay: true }, (client) => {
  client.once('data', (head: Buffer) => relay(client, head));
});
const listening = await listen(server, { port: 0, host: '127.0.0.1', backlog: SERVER_LIMITS.listenBacklog, acceptors: SERVER_LIMITS.acceptors });
process.send?.({ port: listening.address.port });
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
