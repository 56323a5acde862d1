import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { SnapshotStore } from '../config/store.js';
import { pickTarget, type RoutingSnapshot, type Upstream } from '../config/snapshot.js';
import { ClientGoneError } from '../errors/client-gone.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { Admissions, UpstreamAdmission } from '../proxy/admission.js';
import type { Logger } from '../observability/logger.js';
import type { GatewayMetrics } from '../observability/metrics.js';
import { forward, type ForwardHooks, type ForwardOutcome } from '../proxy/forward.js';
import { upstreamRequestHeaders } from '../proxy/headers.js';
import { aliasModel, withAliases } from '../proxy/model-list.js';
import { limitedBodyStream } from '../proxy/limited-stream.js';
import { parseJsonRequest, readBody, replaceModel } from '../proxy/request-body.js';
import type { UpstreamPools } from '../proxy/upstream-pools.js';
import { authenticate } from './auth.js';
import type { RequestRecord } from './request-record.js';

export interface ProxyDeps {
  readonly store: SnapshotStore;
  readonly pools: UpstreamPools;
  readonly admissions: Admissions;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  readonly complete: (record: RequestRecord) => void;
}

/** Body content types the gateway streams through untouched instead of reading as JSON. */
const RAW_BODY_TYPES = /^(multipart\/|application\/octet-stream|audio\/|image\/|video\/)/i;
const DOT_SEGMENT = /(^|\/)(\.|%2e){1,2}(\/|$)/i;
const ENCODED_SLASH = /%2f|%5c|\\/i;

interface RoutedBody {
  upstream: Upstream;
  body: Buffer | string | Readable | null;
  contentLength: number | null;
  /** The client asked for an event stream. */
  stream: boolean;
}

/** A proxied request on Node's own request and response: throws a GatewayError before anything is forwarded. */
export type Proxy = (req: IncomingMessage, res: ServerResponse, record: RequestRecord) => Promise<void>;

/**
 * Handles every `/v1/*` request: authenticate, read and redirect the body,
 * forward, relay. Everything per request lives on the record and one relay
 * handler: no closures are created per request.
 */
export function createProxy(deps: ProxyDeps): Proxy {
  const { store, pools, admissions, metrics, logger, complete } = deps;

  const hooks: ForwardHooks<RequestRecord> = {
    onResponseStart(outcome: ForwardOutcome, record: RequestRecord) {
      metrics.upstreamResponded(record.upstream!, outcome.ttfbMs / 1000);
      if (outcome.stream) metrics.activeStreams++;
    },
    onDone(outcome: ForwardOutcome, error: Error | null, record: RequestRecord) {
      record.slot?.leave();
      record.slot = null;
      if (outcome.stream && outcome.ttfbMs >= 0) metrics.activeStreams--;
      if (outcome.errorCode === 'internal_error') logger.error({ err: error, req_id: record.id }, 'the request could not be sent upstream');
      if (outcome.errorCode !== null) metrics.upstreamFailed(record.upstream!, outcome.errorCode);
      record.status = outcome.status;
      record.ttfbMs = outcome.ttfbMs;
      record.bytesOut = outcome.bytesOut;
      record.stream = outcome.stream;
      record.errorCode = outcome.errorCode;
      record.clientAborted = outcome.clientAborted;
      complete(record);
    },
  };

  return async function proxy(req: IncomingMessage, res: ServerResponse, record: RequestRecord): Promise<void> {
    const snapshot = store.current;
    if (snapshot === null) throw new GatewayError('not_ready');
    record.keyId = authenticate(req.headers.authorization, snapshot);

    const url = req.url ?? '/';
    const pathname = record.path;
    if (DOT_SEGMENT.test(pathname) || ENCODED_SLASH.test(pathname)) throw new GatewayError('not_found');

    let rewriteBody: ((body: Buffer) => Buffer) | null = null;
    if (req.method === 'GET' && pathname.startsWith('/v1/models') && snapshot.routes.size > 0) {
      if (pathname.startsWith(MODEL_PATH) && answerAliasModel(pathname, snapshot, res, record)) return;
      if (pathname === '/v1/models') rewriteBody = (body) => withAliases(body, snapshot.routes.keys());
    }

    const routed = await routeBody(req, snapshot, record);
    const upstream = routed.upstream;
    record.upstream = upstream.name;
    const admission = admissions.get(upstream.name, upstream.admission);
    if (!admission.tryEnter()) await waitForSlot(admission, res);
    record.slot = admission;
    record.forwarded = true;
    const headers = upstreamRequestHeaders(req.headers, upstream.authorization, routed.contentLength, record.id);
    if (rewriteBody !== null) headers['accept-encoding'] = 'identity'; // the list is read, so it must arrive plain

    forward(
      pools.get(upstream),
      {
        method: req.method ?? 'GET',
        path: upstream.basePath + url.slice(3),
        headers,
        body: routed.body,
        headersTimeoutMs: upstream.headersTimeoutMs,
        idleTimeoutMs: upstream.idleTimeoutMs,
        sendNow: routed.stream,
        requestId: record.id,
        upstreamKey: upstream.apiKey,
        rewriteBody,
      },
      res,
      hooks,
      record,
    );
  };
}

/** Waits for a slot at a capped upstream; the wait ends when the client goes away. */
async function waitForSlot(admission: UpstreamAdmission, res: ServerResponse): Promise<void> {
  const gone = new AbortController();
  const onClose = (): void => gone.abort(new ClientGoneError());
  res.once('close', onClose);
  try {
    await admission.wait(gone.signal);
  } finally {
    res.off('close', onClose);
  }
}

const MODEL_PATH = '/v1/models/';

/** `GET /v1/models/<alias>` is answered by the gateway: the upstream does not know the alias. */
function answerAliasModel(pathname: string, snapshot: RoutingSnapshot, res: ServerResponse, record: RequestRecord): boolean {
  let id: string;
  try {
    id = decodeURIComponent(pathname.slice(MODEL_PATH.length));
  } catch {
    return false;
  }
  if (!snapshot.routes.has(id)) return false;
  record.model = id;
  const body = JSON.stringify(aliasModel(id));
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-request-id': record.id });
  res.end(body);
  return true;
}

/** Reads what the routing needs from the body and picks the upstream and the model sent to it. */
async function routeBody(req: IncomingMessage, snapshot: RoutingSnapshot, record: RequestRecord): Promise<RoutedBody> {
  const { settings } = snapshot;
  const method = req.method;
  const hasBody = req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined;
  if (!hasBody || method === 'GET' || method === 'HEAD') {
    return { upstream: snapshot.defaultUpstream, body: null, contentLength: hasBody ? 0 : null, stream: false };
  }
  const contentType = req.headers['content-type'];
  if (contentType !== undefined && RAW_BODY_TYPES.test(contentType)) {
    const declared = req.headers['content-length'];
    return {
      upstream: snapshot.defaultUpstream,
      body: limitedBodyStream(req, settings.bodyLimit),
      contentLength: declared === undefined ? null : Number(declared),
      stream: false,
    };
  }

  const raw = await readBody(req, settings.bodyLimit);
  record.bytesIn = raw.length;
  const json = parseJsonRequest(raw);
  record.model = json.model;
  const route = snapshot.routes.get(json.model);
  if (route === undefined) {
    if (settings.unknownModels === 'reject') throw new GatewayError('model_not_found', undefined, { param: 'model' });
    record.targetModel = json.model;
    return { upstream: snapshot.defaultUpstream, body: raw, contentLength: raw.length, stream: json.stream };
  }
  const target = pickTarget(route);
  record.targetModel = target.model;
  if (target.model === json.model) return { upstream: target.upstream, body: raw, contentLength: raw.length, stream: json.stream };
  const body = replaceModel(json.text, target.model);
  return { upstream: target.upstream, body, contentLength: Buffer.byteLength(body), stream: json.stream };
}
