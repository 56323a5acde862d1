import type { RoutingSnapshot } from '../config/snapshot.js';
import { ALL_MODELS } from '../policy/model-allow-list.js';
import type { Principal } from '../policy/types.js';
import { isRouted, routedModels } from '../routing/resolve.js';
import { modelAllowed, notAllowed } from './authorize.js';
import type { RequestLifecycle } from './lifecycle.js';

/**
 * The gateway's routed model names (aliases) belong in `GET /v1/models`:
 * clients fill their model pickers from it, and an alias the upstream has
 * never heard of would otherwise be invisible. A consumer with an allow-list
 * sees only the models it may use.
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

/**
 * The upstream's list with every alias it lacks appended and, for a consumer
 * with an allow-list, only the models `allowed` passes (an entry without a
 * string id cannot be allowed); anything that is not an OpenAI list is left
 * as it is, and so is a list with nothing to change (the very same bytes).
 */
export function withAliases(body: Buffer, aliases: Iterable<string>, allowed: (model: string) => boolean = ALL_MODELS): Buffer {
  let list: ModelList;
  try {
    list = JSON.parse(body.toString('utf8')) as ModelList;
  } catch {
    return body;
  }
  if (list === null || typeof list !== 'object' || !Array.isArray(list.data)) return body;
  const upstream = list.data as unknown[];
  const idOf = (model: unknown): unknown => (model as { id?: unknown } | null)?.id;
  const data = allowed === ALL_MODELS ? upstream : upstream.filter((model) => typeof idOf(model) === 'string' && allowed(idOf(model) as string));
  const known = new Set(data.map(idOf));
  const added = [...aliases].filter((alias) => !known.has(alias) && allowed(alias)).map(aliasModel);
  if (added.length === 0 && data.length === upstream.length) return body;
  return Buffer.from(JSON.stringify({ ...list, data: [...data, ...added] }));
}

/**
 * What the gateway does for a `GET /v1/models...` request: answers
 * `/v1/models/<alias>` itself (true: done), refuses a model the consumer may
 * not use (403 `model_not_allowed`), or gives the rewrite of the upstream's
 * `/v1/models` list (aliases added, the allow-list applied); null when it has
 * nothing to do.
 */
export function modelsEndpoint(lifecycle: RequestLifecycle, snapshot: RoutingSnapshot, principal: Principal): true | ((body: Buffer) => Buffer) | null {
  const { req, record } = lifecycle;
  const path = record.path;
  if (req.method !== 'GET' || !path.startsWith(MODELS)) return null;
  const allowed = principal.policy?.models ?? ALL_MODELS;
  if (path === MODELS) {
    const aliases = routedModels(snapshot, principal);
    return aliases.size === 0 && allowed === ALL_MODELS ? null : (body) => withAliases(body, aliases, allowed);
  }
  if (!path.startsWith(MODEL_PREFIX)) return null;
  let id: string;
  try {
    id = decodeURIComponent(path.slice(MODEL_PREFIX.length));
  } catch {
    id = path.slice(MODEL_PREFIX.length);
  }
  record.model = id;
  if (!modelAllowed(principal, id)) throw notAllowed(id);
  if (!isRouted(snapshot, principal, id)) return null;
  const body = JSON.stringify(aliasModel(id));
  lifecycle.res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-request-id': record.id });
  lifecycle.res.end(body);
  return true;
}
