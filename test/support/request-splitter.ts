/** One HTTP/1.1 request as a raw test server sees it: head text and a content-length body. */
export interface RawRequestBytes {
  readonly head: string;
  readonly body: Buffer;
}

/**
 * Cuts the bytes a raw `node:net` test server receives into requests
 * (heads, and bodies framed by content-length), however they arrive.
 */
export class RequestSplitter {
  #pending = Buffer.alloc(0);

  /** Adds received bytes; returns the requests they complete. */
  push(data: Buffer): RawRequestBytes[] {
    this.#pending = Buffer.concat([this.#pending, data]);
    const requests: RawRequestBytes[] = [];
    for (;;) {
      const pending = this.#pending;
      const end = pending.indexOf('\r\n\r\n');
      if (end === -1) return requests;
      const head = pending.toString('latin1', 0, end);
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (pending.length < end + 4 + length) return requests;
      requests.push({ head, body: pending.subarray(end + 4, end + 4 + length) });
      this.#pending = pending.subarray(end + 4 + length);
    }
  }
}
