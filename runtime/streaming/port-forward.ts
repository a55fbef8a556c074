// One forwarded connection, whatever the transport: the client's data channel on
// one side, a socket into the sandbox's network namespace on the other, bytes
// both ways with half-closes passed on, failures reported on the error channel.
import type { Duplex, Readable, Writable } from "node:stream";
import { finished } from "node:stream/promises";
import type { Logger } from "pino";
import type { StreamingRuntime } from "./streaming-runtime.js";

/** The client's side of one forwarded connection. */
export interface ClientEnds {
  /** Bytes from the client; its end is the client's half-close. */
  input: Readable;
  /** Bytes to the client; ended when the pod half-closes. */
  output: Writable;
  /** Tells the client why forwarding failed (a kubelet-style message on the error channel). */
  reportError(message: string): void;
  /** No more errors will come (kubectl waits for this before it lets go of the connection). */
  endErrors(): void;
}

export interface ForwardOptions {
  runtime: StreamingRuntime;
  podSandboxId: string;
  port: number;
  /** After one direction ends, how long the other may go on (containerd waits 1 s). */
  halfCloseTimeoutMs: number;
  signal: AbortSignal;
  log: Logger;
}

const describe = (o: ForwardOptions, err: unknown): string =>
  `error forwarding port ${o.port} to pod ${o.podSandboxId}: ${err instanceof Error ? err.message : String(err)}`;

export async function forwardPort(ends: ClientEnds, options: ForwardOptions): Promise<void> {
  const { signal, log } = options;
  let pod: Duplex;
  try {
    pod = await options.runtime.portForward({ podSandboxId: options.podSandboxId, port: options.port }, signal);
  } catch (err) {
    if (!signal.aborted) {
      log.info({ port: options.port, err: err instanceof Error ? err.message : String(err) }, "port forward failed");
      ends.reportError(describe(options, err));
    }
    ends.input.destroy();
    ends.output.end();
    ends.endErrors();
    return;
  }
  if (signal.aborted) {
    pod.destroy();
    ends.input.destroy();
    return;
  }

  await new Promise<void>((resolve) => {
    let clientDone = false;
    let podDone = false;
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal.removeEventListener("abort", finish);
      ends.input.unpipe(pod);
      pod.unpipe(ends.output);
      pod.destroy();
      ends.input.destroy();
      if (!ends.output.writableEnded && !ends.output.destroyed) ends.output.end();
      ends.endErrors();
      // Resolve once what the pod sent has been handed to the transport.
      finished(ends.output).then(resolve, resolve);
    };
    const progress = (): void => {
      if (clientDone && podDone) finish();
      else timer ??= setTimeout(finish, options.halfCloseTimeoutMs);
    };

    ends.input.pipe(pod);
    ends.input.once("end", () => {
      clientDone = true;
      progress();
    });
    pod.pipe(ends.output);
    pod.once("end", () => {
      podDone = true;
      // Nothing more can fail from here: let the client finish with this connection.
      ends.endErrors();
      progress();
    });
    pod.on("error", (err) => {
      if (!done && !signal.aborted) ends.reportError(describe(options, err));
      finish();
    });
    pod.once("close", () => {
      if (!podDone || !clientDone) log.debug({ port: options.port }, "pod connection closed");
      // A socket without allowHalfOpen closes as soon as the pod half-closes; let the output drain first.
      if (podDone) progress();
      else finish();
    });
    ends.input.on("error", finish);
    ends.output.on("error", finish);
    signal.addEventListener("abort", finish, { once: true });
  });
}
