// Exec and attach, independent of the transport: run the call on the runtime with
// the client's streams, then report how it ended on the error channel the way
// kubelet does (a metav1.Status as JSON from v4 on, plain text before).
import { finished } from "node:stream/promises";
import type { Readable, Writable } from "node:stream";
import type { Logger } from "pino";
import type { AttachRequest, ExecRequest, ExecStreams, StreamingRuntime, TerminalSize } from "./streaming-runtime.js";

/** metav1.Status, as kubelet encodes it (field order included). */
export interface Status {
  metadata: Record<string, never>;
  status: "Success" | "Failure";
  message?: string;
  reason?: string;
  details?: { causes: { reason?: string; message: string }[] };
  code?: number;
}

export const successStatus = (): Status => ({ metadata: {}, status: "Success" });

export const nonZeroExitStatus = (cmd: readonly string[], exitCode: number): Status => ({
  metadata: {},
  status: "Failure",
  message: `command terminated with non-zero exit code: error executing command [${cmd.join(" ")}], exit code ${exitCode}`,
  reason: "NonZeroExitCode",
  details: { causes: [{ reason: "ExitCode", message: String(exitCode) }] },
});

export const internalErrorStatus = (message: string): Status => ({
  metadata: {},
  status: "Failure",
  message: `Internal error occurred: ${message}`,
  reason: "InternalError",
  details: { causes: [{ message }] },
  code: 500,
});

/**
 * The bytes for the error channel: v4 and later carry the Status as JSON; older
 * versions carry only a failure's message, and nothing on success.
 */
export function encodeStatus(status: Status, json: boolean): Buffer | undefined {
  if (json) return Buffer.from(JSON.stringify(status));
  return status.status === "Success" ? undefined : Buffer.from(status.message ?? "");
}

/** What a transport (SPDY or WebSocket) provides for one exec or attach. */
export interface RemoteCommandTransport {
  readonly stdin?: Readable;
  readonly stdout?: Writable;
  readonly stderr?: Writable;
  readonly resize?: AsyncIterable<TerminalSize>;
  /** Writes the final status on the error channel and ends that channel. */
  writeStatus(status: Status): Promise<void>;
  /** Ends the session gracefully; resolves once the connection is gone. */
  finish(): Promise<void>;
}

export type RemoteCommand = { kind: "exec"; req: ExecRequest } | { kind: "attach"; req: AttachRequest };

export async function serveRemoteCommand(
  command: RemoteCommand,
  transport: RemoteCommandTransport,
  runtime: StreamingRuntime,
  session: { signal: AbortSignal; log: Logger },
): Promise<void> {
  const { signal, log } = session;
  const streams: ExecStreams = {
    tty: command.req.tty,
    ...(transport.stdin && { stdin: transport.stdin }),
    ...(transport.stdout && { stdout: transport.stdout }),
    ...(transport.stderr && { stderr: transport.stderr }),
    ...(transport.resize && { resize: transport.resize }),
  };
  try {
    let status: Status;
    try {
      if (command.kind === "exec") {
        const { exitCode } = await runtime.exec(command.req, streams, signal);
        status = exitCode === 0 ? successStatus() : nonZeroExitStatus(command.req.cmd, exitCode);
      } else {
        await runtime.attach(command.req, streams, signal);
        status = successStatus();
      }
    } catch (err) {
      if (signal.aborted) return;
      const message = err instanceof Error ? err.message : String(err);
      log.warn({ err: message }, `${command.kind} failed`);
      status = internalErrorStatus(command.kind === "exec" ? `error executing command in container: ${message}` : `error attaching to container: ${message}`);
    }
    if (signal.aborted) return;
    transport.stdin?.destroy();
    await Promise.all([endWritable(transport.stdout), endWritable(transport.stderr)]);
    if (signal.aborted) return;
    await transport.writeStatus(status);
    log.debug({ status: status.status, reason: status.reason }, `${command.kind} finished`);
  } finally {
    transport.stdin?.destroy();
    transport.stdout?.destroy();
    transport.stderr?.destroy();
    await transport.finish();
  }
}

/** Ends a writable unless its owner already did, and waits until it has flushed. */
export async function endWritable(writable: Writable | undefined): Promise<void> {
  if (writable === undefined || writable.destroyed) return;
  if (!writable.writableEnded) writable.end();
  await finished(writable).catch(() => undefined);
}

/** Terminal sizes for the runtime: keeps only the newest unread size, ends with the session. */
export class TerminalSizeQueue implements AsyncIterable<TerminalSize> {
  #pending: TerminalSize | undefined;
  #waiting: ((result: IteratorResult<TerminalSize>) => void) | undefined;
  #ended = false;

  push(size: TerminalSize): void {
    if (this.#ended) return;
    const waiting = this.#waiting;
    if (waiting !== undefined) {
      this.#waiting = undefined;
      waiting({ value: size, done: false });
    } else {
      this.#pending = size;
    }
  }

  end(): void {
    this.#ended = true;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<TerminalSize> {
    return {
      next: () => {
        const pending = this.#pending;
        if (pending !== undefined) {
          this.#pending = undefined;
          return Promise.resolve({ value: pending, done: false });
        }
        if (this.#ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => (this.#waiting = resolve));
      },
      return: () => {
        this.end();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

const MAX_RESIZE_MESSAGE = 4096;

/**
 * Reads `{"Width":80,"Height":24}` objects, back to back as Go's json.Decoder
 * reads them, from a byte stream (SPDY) or one per message (WebSocket).
 */
export function readTerminalSizes(input: Readable, log: Logger): TerminalSizeQueue {
  const queue = new TerminalSizeQueue();
  let text = "";
  let depth = 0;
  let inString = false;
  let escaped = false;
  let start = -1;
  input.setEncoding("utf8");
  input.on("data", (chunk: string) => {
    const from = text.length;
    text += chunk;
    for (let i = from; i < text.length; i++) {
      const c = text[i];
      if (inString) {
        if (escaped) escaped = false;
        else if (c === "\\") escaped = true;
        else if (c === '"') inString = false;
      } else if (c === '"') inString = true;
      else if (c === "{") {
        if (depth++ === 0) start = i;
      } else if (c === "}" && depth > 0 && --depth === 0) {
        const size = parseTerminalSize(text.slice(start, i + 1));
        if (size !== undefined) queue.push(size);
        else log.debug({ message: text.slice(start, i + 1) }, "ignoring malformed resize message");
        text = text.slice(i + 1);
        i = -1;
        start = -1;
      }
    }
    if (depth === 0) text = "";
    else if (text.length > MAX_RESIZE_MESSAGE) {
      log.debug("ignoring oversized resize message");
      text = "";
      depth = 0;
      inString = false;
      escaped = false;
    }
  });
  input.once("end", () => queue.end());
  input.once("close", () => queue.end());
  input.on("error", () => queue.end());
  return queue;
}

function parseTerminalSize(json: string): TerminalSize | undefined {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  // Go's encoding/json matches field names case-insensitively.
  const fields = new Map(Object.entries(value).map(([k, v]) => [k.toLowerCase(), v]));
  const width = fields.get("width");
  const height = fields.get("height");
  const valid = (n: unknown): n is number => typeof n === "number" && Number.isInteger(n) && n >= 0 && n <= 0xffff;
  return valid(width) && valid(height) ? { width, height } : undefined;
}
