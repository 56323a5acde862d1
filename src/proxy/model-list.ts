/**
 * The gateway's routed model names (aliases) belong in `GET /v1/models`:
 * clients fill their model pickers from it, and an alias the upstream has
 * never heard of would otherwise be invisible.
 */

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
  const known = new Set(list.data.map((model: unknown) => (model as { id?: unknown } | null)?.id));
  const added = [...aliases].filter((alias) => !known.has(alias)).map(aliasModel);
  if (added.length === 0) return body;
  return Buffer.from(JSON.stringify({ ...list, data: [...list.data, ...added] }));
}
