// The adapter between grpc-js and crib's handlers: every handler gets a context
// whose signal ends with the call (client cancel, deadline, completion), and
// every call is logged once with its duration and status.
import { status, type Deadline, type ServerUnaryCall, type ServerWritableStream, type sendUnaryData, type ServiceDefinition, type UntypedServiceImplementation, type UntypedHandleCall } from "@grpc/grpc-js";
import { setMaxListeners } from "node:events";
import type { Logger } from "pino";
import { toServiceError } from "./errors.js";

export interface CallContext {
  signal: AbortSignal;
  log: Logger;
  /** when the client gives up (epoch ms), if it set a deadline */
  readonly deadline?: number | undefined;
}

export type Handler<Req, Res> = (req: Req, ctx: CallContext) => Promise<Res>;
/** `send` resolves when the stream can take more (at once, or when the client has read enough); it rejects when the call ends. */
export type StreamHandler<Req, Res> = (req: Req, send: (res: Res) => Promise<void>, ctx: CallContext) => Promise<void>;

export interface CallObserver {
  callDone(method: string, code: status, seconds: number): void;
}

interface CallLike {
  readonly cancelled: boolean;
  getDeadline(): Deadline;
  once(e: "cancelled", l: () => void): unknown;
}

// Made once: a DOMException captures a stack, and every completed call aborts its signal.
const COMPLETED = new DOMException("the call has completed", "AbortError");

/**
 * A call's context. Most reads are answered from memory without looking at
 * the signal or logging, so the signal (with its deadline timer and cancel
 * listener) and the child logger are made on first use only.
 */
class LazyContext implements CallContext {
  #lifetime: AbortController | undefined;
  #timer: NodeJS.Timeout | undefined;
  #log: Logger | undefined;
  #ended = false;

  constructor(readonly method: string, readonly base: Logger, readonly call: CallLike) {}

  get signal(): AbortSignal {
    if (this.#lifetime) return this.#lifetime.signal;
    const lifetime = new AbortController();
    this.#lifetime = lifetime;
    // one call may fan out to many containerd calls at once (StopPodSandbox), each listening
    setMaxListeners(0, lifetime.signal);
    const cancelled = () => lifetime.abort(new DOMException(`${this.method}: cancelled by the client`, "AbortError"));
    if (this.#ended) lifetime.abort(COMPLETED);
    else if (this.call.cancelled) cancelled();
    else {
      this.call.once("cancelled", cancelled);
      const deadline = this.call.getDeadline();
      const at = deadline instanceof Date ? deadline.getTime() : deadline;
      if (Number.isFinite(at)) {
        this.#timer = setTimeout(() => lifetime.abort(new DOMException(`${this.method}: the deadline passed`, "TimeoutError")), Math.max(0, at - Date.now()));
        this.#timer.unref();
      }
    }
    return lifetime.signal;
  }

  get deadline(): number | undefined {
    const deadline = this.call.getDeadline();
    const at = deadline instanceof Date ? deadline.getTime() : deadline;
    return Number.isFinite(at) ? at : undefined;
  }

  get log(): Logger {
    this.#log ??= this.base.child({ method: this.method });
    return this.#log;
  }

  end(): void {
    this.#ended = true;
    clearTimeout(this.#timer);
    this.#lifetime?.abort(COMPLETED);
  }
}

function finish(ctx: LazyContext, observer: CallObserver | undefined, method: string, started: bigint, err: unknown) {
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const code = err === undefined ? status.OK : toServiceError(err).code;
  observer?.callDone(method, code, seconds);
  const ms = Math.round(seconds * 1e6) / 1e3;
  if (err === undefined) {
    if (ctx.base.isLevelEnabled("debug")) ctx.log.debug({ ms, code: status[code] }, "rpc");
  }
  else ctx.log.warn({ ms, code: status[code], err: err instanceof Error ? err.message : String(err) }, "rpc failed");
}

export function unary<Req, Res>(method: string, log: Logger, handler: Handler<Req, Res>, observer?: CallObserver) {
  return (call: ServerUnaryCall<Req, Res>, done: sendUnaryData<Res>): void => {
    const started = process.hrtime.bigint();
    const ctx = new LazyContext(method, log, call);
    handler(call.request, ctx).then(
      (res) => { finish(ctx, observer, method, started, undefined); done(null, res); },
      (err: unknown) => { finish(ctx, observer, method, started, err); done(toServiceError(err)); },
    ).finally(() => ctx.end());
  };
}

export function serverStream<Req, Res>(method: string, log: Logger, handler: StreamHandler<Req, Res>, observer?: CallObserver) {
  return (call: ServerWritableStream<Req, Res>): void => {
    const started = process.hrtime.bigint();
    const ctx = new LazyContext(method, log, call);
    handler(call.request, (res) => sendWhenWritable(call, res, ctx.signal), ctx).then(
      () => { finish(ctx, observer, method, started, undefined); call.end(); },
      (err: unknown) => {
        finish(ctx, observer, method, started, err);
        if (!call.cancelled) call.emit("error", { ...toServiceError(err), metadata: undefined });
      },
    ).finally(() => ctx.end());
  };
}

// grpc-js buffers whatever is written; waiting for "drain" keeps a client
// that does not read from growing crib's memory.
function sendWhenWritable<Res>(call: ServerWritableStream<unknown, Res>, res: Res, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(signal.reason);
  if (call.write(res)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const drained = (): void => { signal.removeEventListener("abort", aborted); resolve(); };
    const aborted = (): void => { call.off("drain", drained); reject(signal.reason); };
    call.once("drain", drained);
    signal.addEventListener("abort", aborted, { once: true });
  });
}

/** Handlers for every rpc of `service`: the given ones, and UNIMPLEMENTED naming the rpc for the rest. */
export function implementAll(service: ServiceDefinition, given: UntypedServiceImplementation): UntypedServiceImplementation {
  const out: UntypedServiceImplementation = {};
  for (const [name, def] of Object.entries(service)) {
    const handler = given[name];
    if (handler) { out[name] = handler; continue; }
    const details = `${def.path.slice(1).replace("/", ".")} is not implemented by crib`;
    out[name] = (def.responseStream
      ? (call: ServerWritableStream<unknown, unknown>) => call.emit("error", { code: status.UNIMPLEMENTED, details })
      : (_call: unknown, done: sendUnaryData<unknown>) => done({ code: status.UNIMPLEMENTED, details })) as UntypedHandleCall;
  }
  return out;
}
