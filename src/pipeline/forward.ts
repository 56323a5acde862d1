import type { ServerResponse } from 'node:http';
import { ClientGoneError } from '../errors/client-gone.js';
import type { RoutePlan } from '../routing/resolve.js';
import type { Transports } from '../transport/transports.js';
import type { Admissions, UpstreamAdmission } from './admission.js';
import { answerModel, type AnswerModelFactory } from './answer-model.js';
import type { RequestLifecycle } from './lifecycle.js';
import type { ClientRequestBody } from './read-body.js';
import type { BodyTransformFactory } from './body-transform.js';
import { redaction } from './redact.js';
import { Relay } from './relay.js';
import { upstreamRequestHeaders } from './upstream-headers.js';
import type { UsageMeter } from './usage-meter.js';

export interface ForwardDeps {
  readonly transports: Transports;
  readonly admissions: Admissions;
}

/**
 * Sends the request to the plan's target, with the model that target takes
 * written into the body, JSON or form (every other byte as the client sent it,
 * but for include_usage when `meter` asks the upstream for a stream's usage),
 * and hands the answer to a Relay. Waits for a slot first when the upstream
 * caps its requests in flight.
 */
export async function forward(
  deps: ForwardDeps,
  lifecycle: RequestLifecycle,
  plan: RoutePlan,
  request: ClientRequestBody,
  rewriteBody: ((body: Buffer) => Buffer) | null,
  meter: UsageMeter | null = null,
): Promise<void> {
  const { req, record } = lifecycle;
  const target = plan.targets[0]!;
  const upstream = target.upstream;
  record.upstream = upstream.name;
  // The one place a body's model is decided, for every kind of body: the target's.
  const named = request.model !== null;
  if (named) record.targetModel = target.model;
  const { body, contentLength } = request.upstreamBody(named ? target.model : null, meter?.addsStreamUsage === true);
  if (meter !== null) lifecycle.metering(meter);

  const admission = deps.admissions.get(upstream.name, upstream.admission);
  if (!admission.tryEnter()) await waitForSlot(admission, lifecycle.res);
  lifecycle.dispatching(admission);

  const answer = answerModel(plan, target.model, (result) => lifecycle.answerModel(result));
  const headers = upstreamRequestHeaders(req.headers, upstream.authorization, contentLength, record.id);
  // The body is read (the model list, the usage) or rewritten (the answer's model), so it must arrive plain.
  if (rewriteBody !== null || meter !== null || answer?.rewrites === true) headers['accept-encoding'] = 'identity';
  lifecycle.attemptStarting(upstream, headers);
  deps.transports.get(upstream).dispatch(
    {
      method: record.method,
      path: upstream.basePath + (req.url ?? '/').slice(3),
      headers,
      body,
      headersTimeoutMs: upstream.headersTimeoutMs,
      idleTimeoutMs: upstream.idleTimeoutMs,
      sendNow: request.stream,
    },
    new Relay(lifecycle, { secrets: upstream.secrets, transforms: bodyTransforms(lifecycle, upstream.secrets, meter, answer), rewriteBody }),
  );
}

/**
 * The stages the answer's body passes through, in order: the upstream's
 * secrets taken out, at any status; the usage read (and what include_usage
 * added taken out), from the upstream's own bytes; the requested model
 * written back.
 */
function bodyTransforms(
  lifecycle: RequestLifecycle,
  secrets: readonly string[],
  meter: UsageMeter | null,
  answer: AnswerModelFactory | null,
): readonly BodyTransformFactory[] {
  const transforms: BodyTransformFactory[] = [];
  const redacting = redaction(secrets, () => lifecycle.redacted('body'));
  if (redacting !== null) transforms.push(redacting);
  if (meter !== null) transforms.push(meter);
  if (answer !== null) transforms.push(answer);
  return transforms;
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
