import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SnapshotStore } from '../config/store.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { Logger } from '../observability/logger.js';
import { routeLabel, type GatewayMetrics } from '../observability/metrics.js';
import type { Admissions } from '../proxy/admission.js';
import type { UpstreamPools } from '../proxy/upstream-pools.js';
import type { Access } from './access.js';
import { respondWithError } from './errors.js';
import { createProxy } from './proxy.js';

const ALLOWED_METHODS = 'GET, HEAD, POST, DELETE';

/** `/v1/...` paths, spelled exactly (the path is case-sensitive). */
export function isV1Path(url: string | undefined): boolean {
  return url !== undefined && url.startsWith('/v1/');
}

export interface V1Deps {
  readonly store: SnapshotStore;
  readonly pools: UpstreamPools;
  readonly admissions: Admissions;
  readonly metrics: GatewayMetrics;
  readonly access: Access;
  readonly logger: Logger;
}

/** Every `/v1/*` request: open the record, proxy, answer errors in the OpenAI shape, close the record once. */
export function createV1Handler(deps: V1Deps): (req: IncomingMessage, res: ServerResponse) => void {
  const { access, logger } = deps;
  const proxy = createProxy({ ...deps, complete: access.complete });
  const methodNotAllowed = new GatewayError('method_not_allowed');

  return function v1(req: IncomingMessage, res: ServerResponse): void {
    const record = access.open(req);
    record.route = routeLabel(record.path);
    const method = req.method;
    if (method !== 'POST' && method !== 'GET' && method !== 'DELETE' && method !== 'HEAD') {
      res.setHeader('allow', ALLOWED_METHODS);
      respondWithError(req, res, record, methodNotAllowed, logger);
      access.settle(record, res);
      return;
    }
    proxy(req, res, record).then(
      () => {
        if (!record.forwarded) access.settle(record, res);
      },
      (caught: unknown) => {
        respondWithError(req, res, record, caught, logger);
        if (!record.forwarded) access.settle(record, res);
      },
    );
  };
}
