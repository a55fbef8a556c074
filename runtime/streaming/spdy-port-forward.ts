// Port forwarding over SPDY (portforward.k8s.io): for every forwarded connection
// the client opens an error stream and a data stream that share a `requestID`
// and name the `port`; any number of them, concurrently, for the life of the session.
import type { Logger } from "pino";
import { forwardPort } from "./port-forward.js";
import { headerValue, type SpdySession, type SpdyStream } from "./spdy.js";
import type { StreamingRuntime } from "./streaming-runtime.js";

/** Pending pairs a session may hold before new streams are refused. */
const MAX_PENDING_PAIRS = 1024;

export interface SpdyPortForwardOptions {
  podSandboxId: string;
  runtime: StreamingRuntime;
  streamCreationTimeoutMs: number;
  halfCloseTimeoutMs: number;
  signal: AbortSignal;
  log: Logger;
}

interface Pair {
  data?: SpdyStream;
  error?: SpdyStream;
  timer: NodeJS.Timeout;
}

/** Serves until the client hangs up or the session's signal fires. */
export async function serveSpdyPortForward(spdy: SpdySession, options: SpdyPortForwardOptions): Promise<void> {
  const { signal, log } = options;
  const pairs = new Map<string, Pair>();
  const forwards = new Set<Promise<void>>();

  const start = (requestId: string, data: SpdyStream, error: SpdyStream): void => {
    const port = Number(headerValue(data, "port"));
    spdy.discardInput(error);
    const errors = spdy.writer(error);
    const forward = forwardPort(
      {
        input: spdy.reader(data),
        output: spdy.writer(data),
        reportError: (message) => {
          if (!errors.writableEnded) errors.write(message);
        },
        endErrors: () => {
          if (!errors.writableEnded) errors.end();
        },
      },
      { runtime: options.runtime, podSandboxId: options.podSandboxId, port, halfCloseTimeoutMs: options.halfCloseTimeoutMs, signal, log: log.child({ requestId, port }) },
    ).catch((err: unknown) => log.warn({ err: err instanceof Error ? err.message : String(err), requestId }, "port forward failed"));
    forwards.add(forward);
    void forward.finally(() => forwards.delete(forward));
  };

  const expire = (requestId: string): void => {
    const pair = pairs.get(requestId);
    if (pair === undefined) return;
    pairs.delete(requestId);
    log.debug({ requestId }, "timed out waiting for the stream pair");
    if (pair.error !== undefined) {
      const errors = spdy.writer(pair.error);
      errors.end(`timed out waiting for streams of request ${requestId}`);
    }
    if (pair.data !== undefined) spdy.refuse(pair.data);
  };

  spdy.onStream((stream) => {
    const type = headerValue(stream, "streamType");
    const problem = invalidStream(stream, type);
    const requestId = requestIdOf(stream, type);
    const pair = pairs.get(requestId);
    const duplicate = pair !== undefined && (type === "data" ? pair.data : pair.error) !== undefined;
    if (problem !== undefined || duplicate || (pair === undefined && pairs.size >= MAX_PENDING_PAIRS)) {
      log.debug({ stream: stream.id, requestId, problem: problem ?? "duplicate or too many pending" }, "refusing port-forward stream");
      spdy.refuse(stream);
      return;
    }
    spdy.accept(stream);
    const current = pair ?? { timer: setTimeout(() => expire(requestId), options.streamCreationTimeoutMs) };
    if (type === "data") current.data = stream;
    else current.error = stream;
    pairs.set(requestId, current);
    if (current.data !== undefined && current.error !== undefined) {
      clearTimeout(current.timer);
      pairs.delete(requestId);
      start(requestId, current.data, current.error);
    }
  });

  await Promise.race([spdy.closed, new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }))]);
  for (const pair of pairs.values()) clearTimeout(pair.timer);
  pairs.clear();
  await Promise.all(forwards);
}

function invalidStream(stream: SpdyStream, type: string | undefined): string | undefined {
  const port = headerValue(stream, "port");
  if (port === undefined || port === "") return `"port" header is required`;
  if (!/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) return `port "${port}" must be an integer between 1 and 65535`;
  if (type === undefined || type === "") return `"streamType" header is required`;
  if (type !== "data" && type !== "error") return `invalid stream type "${type}"`;
  return undefined;
}

/**
 * The pair's key. Clients older than the requestID header open error then data
 * with consecutive odd ids, which is kubelet's best guess too.
 */
function requestIdOf(stream: SpdyStream, type: string | undefined): string {
  const id = headerValue(stream, "requestID");
  if (id !== undefined && id !== "") return id;
  return String(type === "data" ? stream.id - 2 : stream.id);
}
