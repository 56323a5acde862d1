/** The client closed its connection (or broke its request) before the gateway could answer: status 499, nothing to send. */
export class ClientGoneError extends Error {
  readonly code = 'CLIENT_GONE';
  constructor(cause?: unknown) {
    super('the client closed the connection', cause === undefined ? undefined : { cause });
    this.name = 'ClientGoneError';
  }
}

/** The status recorded for a request whose client went away before it was answered (nginx's convention). */
export const CLIENT_CLOSED_REQUEST = 499;
