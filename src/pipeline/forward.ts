import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { Upstream } from '../config/upstream.js';
import { ClientGoneError } from '../errors/client-gone.js';
import { attemptFailure, errorCode, fromUpstreamError, timeoutPhase, type AttemptFailure } from '../errors/upstream.js';
import type { RoutePlan } from '../routing/resolve.js';
import type { Transports } from '../transport/transports.js';
import type { ResponseHeaders } from '../transport/types.js';
import type { AttemptOutcome, RequestAccounting } from './account.js';
import type { Admissions, UpstreamAdmission } from './admission.js';
import type { BodyTransformFactory } from './body-transform.js';
import { answerModel, type AnswerModelFactory } from './answer-model.js';
import type { RequestLifecycle } from './lifecycle.js';
import type { ClientRequestBody } from './read-body.js';
import { redaction } from './redact.js';
import { Relay, type AnswerGate } from './relay.js';
import { requestedWaitMs } from './retry-after.js';
import type { TargetHealth } from './target-health.js';
import { upstreamRequestHeaders } from './upstream-headers.js';
import type { UsageMeter } from './usage-meter.js';

export interface ForwardDeps {
  readonly transports: Transports;
  readonly admissions: Admissions;
  readonly health: TargetHealth;
  readonly accounting: RequestAccounting;
  /** Draws in [0, 1) for the backoff's jitter; Math.random unless a test pins it. */
  readonly random?: () => number;
}

/** An attempt is not begun with less than this left before the deadline. */
const MIN_ATTEMPT_MS = 10;
/** Failures that say nothing about the upstream's health: the gateway's own doing, or its shutdown. */
const NOT_THE_UPSTREAMS = new Set(['UPSTREAM_INVALID_HEADER', 'UPSTREAM_POOL_CLOSED', 'body_too_large']);

/** What a failed attempt's target needs for the next decision; made at the first failure. */
interface Failures {
  /** Attempts per plan target (a resend on a fresh connection not counted). */
  readonly tries: Uint8Array;
  /** When each target's last attempt ended (performance.now()), for its backoff. */
  readonly endedAt: Float64Array;
  /** Until when a target asked, in this request, to be left alone (Retry-After). */
  readonly waitUntil: Float64Array;
}

/** The next attempt: which plan target, after how long. */
interface Next {
  readonly index: number;
  readonly delayMs: number;
}

/** The last answer an upstream sent that was discarded for another attempt: the client gets it if nothing better comes. */
interface HeldAnswer {
  readonly index: number;
  readonly status: number;
  readonly headers: ResponseHeaders;
  readonly body: Buffer;
}

/**
 * Sends the request to its plan's targets until one answers: the attempt
 * loop. Each attempt takes a slot at its upstream, writes the target's model
 * into the body, JSON or form (every other byte as the client sent it,
 * but for include_usage when `meter` asks the upstream for a stream's usage),
 * and hands the answer to a Relay, which lets the loop decide at the head. A retry or fallback is
 * made only before any byte of an answer has gone to the client, so the
 * client never gets a mix of two answers; with no attempt left it gets the
 * last answer an upstream sent, as it came, and a gateway error only when no
 * upstream answered at all. Nothing is retried past the request's deadline,
 * nor for a body streamed through (an upload or a form: it cannot be sent twice).
 */
export function forward(
  deps: ForwardDeps,
  lifecycle: RequestLifecycle,
  plan: RoutePlan,
  request: ClientRequestBody,
  rewriteBody: ((body: Buffer) => Buffer) | null,
  deadline: number,
  meter: UsageMeter | null = null,
): void {
  // One meter for the request: it reads the answer that is relayed, whichever attempt sent it.
  if (meter !== null) lifecycle.metering(meter);
  new AttemptLoop(deps, lifecycle, plan, request, rewriteBody, deadline, meter).start();
}

class AttemptLoop implements AnswerGate {
  readonly #deps: ForwardDeps;
  readonly #lifecycle: RequestLifecycle;
  readonly #plan: RoutePlan;
  readonly #request: ClientRequestBody;
  readonly #rewriteBody: ((body: Buffer) => Buffer) | null;
  readonly #meter: UsageMeter | null;
  /** No attempt starts, and no wait ends, past this time (performance.now()). */
  readonly #deadline: number;
  /** The body can be sent again: read whole, or none (known once the first attempt has its body). */
  #replayable = false;
  #failures: Failures | null = null;
  /** The attempt in flight. */
  #index = 0;
  #probe = false;
  #startedAt = 0;
  /** Decided at a discarded answer's head: where the loop goes once its body is in. */
  #next: Next | null = null;
  #held: HeldAnswer | null = null;
  #timer: NodeJS.Timeout | null = null;
  #immediate: NodeJS.Immediate | null = null;

  constructor(
    deps: ForwardDeps,
    lifecycle: RequestLifecycle,
    plan: RoutePlan,
    request: ClientRequestBody,
    rewriteBody: ((body: Buffer) => Buffer) | null,
    deadline: number,
    meter: UsageMeter | null,
  ) {
    this.#deps = deps;
    this.#lifecycle = lifecycle;
    this.#plan = plan;
    this.#request = request;
    this.#rewriteBody = rewriteBody;
    this.#deadline = deadline;
    this.#meter = meter;
  }

  /** The first attempt: the plan's first target, also when none was available (then the least bad, by the plan's order). */
  start(): void {
    this.#attempt(0, false);
  }

  // ---- the answer gate (the Relay asks at the head) ----

  opens(status: number, headers: ResponseHeaders): boolean {
    const upstream = this.#plan.targets[this.#index]!.upstream;
    const health = this.#deps.health;
    this.#deps.accounting.attemptResponded(upstream.name, (performance.now() - this.#startedAt) / 1000);
    this.#lifecycle.attemptResponded(status, isEventStream(headers));
    if (status < 500) health.succeeded(upstream);
    else health.failed(upstream, this.#probe);
    if (status < 400) {
      this.#ended('success');
      return true;
    }
    if (status === 429 || status === 503) this.#noteWait(headers);
    this.#ended(status === 429 ? 'rate_limited' : status >= 500 ? 'server_error' : 'client_error');
    if (!this.#replayable || !upstream.retryOn.statuses.has(status)) return true;
    const next = this.#pick();
    if (next === null) return true;
    this.#next = next;
    return false;
  }

  discarded(status: number, headers: ResponseHeaders, body: Buffer): void {
    this.#lifecycle.attemptEnded(null);
    this.#held = { index: this.#index, status, headers, body };
    const next = this.#next!;
    this.#next = null;
    this.#go(next);
  }

  overflowed(): void {
    this.#next = null;
  }

  failed(error: Error): void {
    const lifecycle = this.#lifecycle;
    const upstream = this.#plan.targets[this.#index]!.upstream;
    const health = this.#deps.health;
    const failure = attemptFailure(error);
    if (failure === 'client_gone') {
      lifecycle.attemptEnded(null);
      if (this.#next === null) {
        if (this.#probe) health.abandoned(upstream);
        this.#ended('abandoned');
      }
      this.#settle();
      return;
    }
    const code = fromUpstreamError(error).code;
    lifecycle.attemptEnded(code);
    this.#deps.accounting.upstreamFailed(upstream.name, code);
    const phase = timeoutPhase(error);
    if (phase !== null) lifecycle.timedOut(phase);
    const next = this.#next;
    if (next !== null) {
      // The discarded answer broke before its end: it cannot be the last answer; the loop goes on as decided.
      this.#next = null;
      this.#go(next);
      return;
    }
    if (failure === 'stale_connection' && this.#replayable && performance.now() < this.#deadline) {
      // The upstream closed an idle connection as the request went out: it never saw the request.
      this.#ended('stale_connection');
      this.#go({ index: this.#index, delayMs: 0 }, true);
      return;
    }
    if (!NOT_THE_UPSTREAMS.has(errorCode(error) ?? '')) health.failed(upstream, this.#probe);
    else if (this.#probe) health.abandoned(upstream);
    this.#ended(failure);
    const retry = this.#replayable && retries(upstream, failure) ? this.#pick() : null;
    if (retry === null) this.#finish(error);
    else this.#go(retry);
  }

  /** The client left while the loop waited to try again (the lifecycle calls this). */
  abort(): void {
    this.#clearTimer();
    this.#settle();
  }

  // ---- attempts ----

  #attempt(index: number, fresh: boolean): void {
    const upstream = this.#plan.targets[index]!.upstream;
    const admission = this.#deps.admissions.get(upstream.name, upstream.admission);
    if (admission.tryEnter()) this.#send(admission, index, fresh);
    else void this.#admitThenSend(admission, index, fresh);
  }

  async #admitThenSend(admission: UpstreamAdmission, index: number, fresh: boolean): Promise<void> {
    try {
      await waitForSlot(admission, this.#lifecycle.res);
    } catch (error) {
      this.#finish(error);
      return;
    }
    this.#send(admission, index, fresh);
  }

  /**
   * One attempt starts: the one place where each does (its span opens in
   * lifecycle.attemptStarting; it ends in lifecycle.attemptEnded or, for the
   * answer relayed, upstreamSettled).
   */
  #send(admission: UpstreamAdmission, index: number, fresh: boolean): void {
    const lifecycle = this.#lifecycle;
    const { req, record } = lifecycle;
    const target = this.#plan.targets[index]!;
    const upstream = target.upstream;
    this.#index = index;
    const failures = this.#failures;
    if (!fresh) {
      if (failures !== null) failures.tries[index]!++;
      // The first request through after an ejection is its upstream's probe (a resend on a fresh connection stays it).
      this.#probe = this.#deps.health.enter(upstream) === 'probe';
    }
    record.upstream = upstream.name;
    // The one place a body's model is decided, for every kind of body: the target's.
    const request = this.#request;
    const named = request.model !== null;
    if (named) record.targetModel = target.model;
    const { body, contentLength } = request.upstreamBody(named ? target.model : null, this.#meter?.addsStreamUsage === true);
    if (record.attempts++ === 0) this.#replayable = !(body instanceof Readable); // a stream is read once
    lifecycle.dispatching(admission);
    const answer = this.#answerModel(target);
    const headers = upstreamRequestHeaders(req.headers, upstream.authorization, contentLength, record.id);
    // The body is read (the model list, the usage) or rewritten (the answer's model), so it must arrive plain.
    if (this.#rewriteBody !== null || this.#meter !== null || answer?.rewrites === true) headers['accept-encoding'] = 'identity';
    lifecycle.attemptStarting(upstream, headers);
    const now = performance.now();
    this.#startedAt = now;
    this.#deps.transports.get(upstream).dispatch(
      {
        method: record.method,
        path: upstream.basePath + (req.url ?? '/').slice(3),
        headers,
        body,
        headersTimeoutMs: Math.max(1, Math.min(upstream.headersTimeoutMs, Math.floor(this.#deadline - now))),
        idleTimeoutMs: upstream.idleTimeoutMs,
        sendNow: request.stream,
        freshConnection: fresh,
      },
      new Relay(lifecycle, this.#relayOptions(upstream, answer), this),
    );
  }

  /** The attempt in flight ended with `outcome` (its answer may still be relayed). */
  #ended(outcome: AttemptOutcome): void {
    const failures = this.#failures;
    if (failures !== null) failures.endedAt[this.#index] = performance.now();
    this.#deps.accounting.attempted(this.#plan.targets[this.#index]!.upstream.name, outcome);
  }

  /** Goes on to `next`: at once (after this turn: the connection just freed goes back to its pool first), or after its delay. */
  #go(next: Next, fresh = false): void {
    const lifecycle = this.#lifecycle;
    if (next.index !== this.#index && this.#plan.route !== null) {
      this.#deps.accounting.fellBack(this.#plan.requestedModel ?? '');
    }
    const run = (): void => {
      this.#timer = null;
      this.#immediate = null;
      this.#attempt(next.index, fresh);
    };
    if (next.delayMs > 0) this.#timer = setTimeout(run, next.delayMs);
    else this.#immediate = setImmediate(run);
    lifecycle.attach(this); // after the timer is set: a client already gone clears it at once
  }

  /** A 429 or 503 that says how long to wait: this target is left alone until then, in this request and, on a route, in others. */
  #noteWait(headers: ResponseHeaders): void {
    const ms = requestedWaitMs(headers, Date.now());
    if (ms === null || ms === 0) return;
    const target = this.#plan.targets[this.#index]!;
    const until = performance.now() + ms;
    this.#failuresSoFar().waitUntil[this.#index] = until;
    if (this.#plan.route !== null) this.#deps.health.wait(target.upstream, target.model, until);
  }

  /**
   * Where to go next, or null when nowhere: first an untried target that is
   * available now, in plan order (a fallback, at once); else the soonest of a
   * retry of a tried target (after its backoff) and a target waiting out a
   * Retry-After, if that fits in the deadline; else an untried target whose
   * upstream is ejected (nothing better is left).
   */
  #pick(): Next | null {
    const now = performance.now();
    const remaining = this.#deadline - now;
    // An attempt cut short by the deadline ends a moment before it (timers count from the turn's start): one begun
    // in what is left could only race the deadline, and sometimes win it. A failed attempt then ends the loop.
    if (remaining < MIN_ATTEMPT_MS) return null;
    const failures = this.#failuresSoFar();
    const targets = this.#plan.targets;
    const health = this.#deps.health;
    const random = this.#deps.random ?? Math.random;
    let best: Next | null = null;
    let ejected = -1;
    for (let index = 0; index < targets.length; index++) {
      const target = targets[index]!;
      const tries = failures.tries[index]!;
      const retry = target.upstream.retry;
      if (tries >= retry.attempts) continue;
      const readyAt = health.readyAt(target.upstream, target.model, now);
      if (readyAt === Number.POSITIVE_INFINITY) {
        if (tries === 0 && ejected === -1) ejected = index;
        continue;
      }
      let ready = Math.max(readyAt, failures.waitUntil[index]!);
      if (tries === 0 && ready <= now) return { index, delayMs: 0 };
      if (tries > 0) ready = Math.max(ready, failures.endedAt[index]! + backoff(retry, tries, random()));
      const delayMs = Math.max(0, ready - now);
      if (delayMs < remaining - MIN_ATTEMPT_MS && (best === null || delayMs < best.delayMs)) best = { index, delayMs };
    }
    if (best !== null) return best;
    return ejected === -1 ? null : { index: ejected, delayMs: 0 };
  }

  #failuresSoFar(): Failures {
    let failures = this.#failures;
    if (failures === null) {
      const count = this.#plan.targets.length;
      failures = { tries: new Uint8Array(count), endedAt: new Float64Array(count), waitUntil: new Float64Array(count) };
      // Made at the first failure: the attempt that failed is the only one so far.
      failures.tries[this.#index] = 1;
      failures.endedAt[this.#index] = performance.now();
      this.#failures = failures;
    }
    return failures;
  }

  // ---- the end ----

  /** No attempt is left: the last answer an upstream sent, as it came, else the gateway's error for `error`. */
  #finish(error: unknown): void {
    const held = this.#held;
    const lifecycle = this.#lifecycle;
    if (held !== null && !(error instanceof ClientGoneError) && !lifecycle.res.destroyed) {
      this.#relayHeld(held);
      return;
    }
    lifecycle.fail(error instanceof ClientGoneError ? error : fromUpstreamError(error));
    lifecycle.upstreamSettled(null);
  }

  /** Relays the held answer from memory, through the same stages (the secrets of its upstream taken out) as any answer. */
  #relayHeld(held: HeldAnswer): void {
    const target = this.#plan.targets[held.index]!;
    const record = this.#lifecycle.record;
    record.upstream = target.upstream.name;
    if (this.#request.model !== null) record.targetModel = target.model;
    const relay = new Relay(this.#lifecycle, this.#relayOptions(target.upstream, this.#answerModel(target)), null);
    relay.onHead(held.status, held.headers);
    if (held.body.length > 0) relay.onBody(held.body, true);
    relay.onEnd();
  }

  #settle(): void {
    this.#lifecycle.upstreamSettled(null);
  }

  #clearTimer(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    if (this.#immediate !== null) clearImmediate(this.#immediate);
    this.#timer = null;
    this.#immediate = null;
  }

  /** The answer-model stage for an answer from `target` (each target may take the request under another name). */
  #answerModel(target: RoutePlan['targets'][number]): AnswerModelFactory | null {
    const lifecycle = this.#lifecycle;
    return answerModel(this.#plan, target.model, (result) => lifecycle.answerModel(result));
  }

  #relayOptions(
    upstream: Upstream,
    answer: AnswerModelFactory | null,
  ): {
    secrets: readonly string[];
    transforms: readonly BodyTransformFactory[];
    rewriteBody: ((body: Buffer) => Buffer) | null;
  } {
    return { secrets: upstream.secrets, transforms: bodyTransforms(this.#lifecycle, upstream.secrets, this.#meter, answer), rewriteBody: this.#rewriteBody };
  }
}

function isEventStream(headers: ResponseHeaders): boolean {
  const contentType = headers['content-type'];
  return typeof contentType === 'string' && contentType.startsWith('text/event-stream');
}

/** Whether the upstream's retry conditions cover a failure before any answer. */
function retries(upstream: Upstream, failure: AttemptFailure): boolean {
  const on = upstream.retryOn;
  switch (failure) {
    case 'connect_failure':
      return on.connectFailure;
    case 'timeout':
      return on.headersTimeout;
    case 'reset':
    case 'stale_connection':
      return on.reset;
    default:
      return false;
  }
}

/** Before the n-th retry of a target: a random wait up to min(max, base * 2^(n-1)) (full jitter). */
function backoff(retry: Upstream['retry'], tries: number, random: number): number {
  return random * Math.min(retry.backoffMaxMs, retry.backoffBaseMs * 2 ** (tries - 1));
}

/**
 * The stages the answer's body passes through, in order: the configured
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
