import type { RoutingSnapshot } from '../config/snapshot.js';
import { isRouted, routedModels } from '../routing/resolve.js';
import type { RequestLifecycle } from './lifecycle.js';

/**
 * The gateway's routed model names (aliases) belong in `GET /v1/models`:
 * clients fill their model pickers from it, and an alias the upstream has
 * never heard of would otherwise be invisible.
 */

const MODELS = '/v1/models';
const MODEL_PREFIX = '/v1/models/';

interface ModelList {
  object?: unknown;
  data?: unknown;
}

/** A model object for an alias, in the OpenAI shape. */
export function aliasModel(id: string): { id: string; object: 'model'; created: 0; owned_by: 'api-proxy' } {
  return { id, object: 'model', created: 0, owned_by: 'api-proxy' };
}

/** The upstream's list with every alias it lacks appended; anything that is not an OpenAI list is left as it is. */
export function withAliases(body: Buffer, aliases: Iterable<string>): Buffer {
  let list: ModelList;
  try {
    list = JSON.parse(body.toString('utf8')) as ModelList;
  } catch {
    return body;
  }
  if (list === null || typeof list !== 'object' || !Array.isArray(list.data)) return body;
  const data = list.data as unknown[];
  const known = new Set(data.map((model) => (model as { id?: unknown } | null)?.id));
  const added = [...aliases].filter((alias) => !known.has(alias)).map(aliasModel);
  if (added.length === 0) return body;
  return Buffer.from(JSON.stringify({ ...list, data: [...data, ...added] }));
}

/**
 * What the gateway does for a `GET /v1/models...` request: answers
 * `/v1/models/<alias>` itself (true: done), or gives the rewrite that adds the
 * aliases to the upstream's `/v1/models` list; null when it has nothing to add.
 */
export function modelsEndpoint(lifecycle: RequestLifecycle, snapshot: RoutingSnapshot): true | ((body: Buffer) => Buffer) | null {
  const { req, record } = lifecycle;
  const path = record.path;
  if (req.method !== 'GET' || !path.startsWith(MODELS) || snapshot.routes.size === 0) return null;
  if (path === MODELS) return (body) => withAliases(body, routedModels(snapshot));
  if (!path.startsWith(MODEL_PREFIX)) return null;
  let id: string;
  try {
    id = decodeURIComponent(path.slice(MODEL_PREFIX.length));
  } catch {
    return null;
  }
  if (!isRouted(snapshot, id)) return null;
  record.model = id;
  const body = JSON.stringify(aliasModel(id));
  lifecycle.res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-request-id': record.id });
  lifecycle.res.end(body);
  return true;
}
