import { GatewayError } from '../errors/gateway-error.js';
import type { Principal } from '../policy/types.js';

/** How much of a refused model name the error message repeats (the name is the client's, of any length). */
const ECHOED_MODEL_CHARS = 256;

/** Whether the consumer's policy lets it use a client-facing model name. */
export function modelAllowed(principal: Principal, model: string): boolean {
  const policy = principal.policy;
  return policy === null || policy.models(model);
}

/**
 * The authorize stage: the consumer's allow-list, judged on the model name
 * the client sent (before any route renames it). Another model is refused
 * with 403 `model_not_allowed`.
 */
export function authorize(principal: Principal, model: string): void {
  if (modelAllowed(principal, model)) return;
  throw notAllowed(model);
}

export function notAllowed(model: string): GatewayError {
  const shown = model.length > ECHOED_MODEL_CHARS ? `${model.slice(0, ECHOED_MODEL_CHARS)}...` : model;
  return new GatewayError('model_not_allowed', `This key may not use the model '${shown}'.`, { param: 'model' });
}
