// Exec and attach over SPDY: the client opens one stream per channel, named by
// its `streamType` header; the session starts once every expected stream is there.
import type { Logger } from "pino";
import { endWritable, encodeStatus, readTerminalSizes, TerminalSizeQueue, type RemoteCommandTransport } from "./remote-command.js";
import { headerValue, type SpdySession, type SpdyStream } from "./spdy.js";

const STREAM_TYPES = ["error", "stdin", "stdout", "stderr", "resize"] as const;
type StreamType = (typeof STREAM_TYPES)[number];
const isStreamType = (t: string | undefined): t is StreamType => (STREAM_TYPES as readonly (string | undefined)[]).includes(t);

/** 4 for v4.channel.k8s.io … 1 for channel.k8s.io. */
export function remoteCommandVersion(protocol: string): number {
  const match = /^v(\d+)\./.exec(protocol);
  return match?.[1] === undefined ? 1 : Number(match[1]);
}

export interface SpdyRemoteCommandOptions {
  protocol: string;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
  streamCreationTimeoutMs: number;
  closeGraceMs: number;
  signal: AbortSignal;
  log: Logger;
}

/** Waits for the client's streams and wraps them; rejects on timeout or abort. */
export function acceptSpdyRemoteCommand(spdy: SpdySession, options: SpdyRemoteCommandOptions): Promise<RemoteCommandTransport> {
  const { signal, log } = options;
  const version = remoteCommandVersion(options.protocol);
  const expected = new Set<StreamType>(["error"]);
  if (options.stdin) expected.add("stdin");
  if (options.stdout) expected.add("stdout");
  if (options.stderr) expected.add("stderr");
  if (options.tty && version >= 3) expected.add("resize");

  return new Promise((resolve, reject) => {
    const streams = new Map<StreamType, SpdyStream>();
    let settled = false;
    const settle = (): void => {
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
    };
    const onAbort = (): void => {
      if (settled) return;
      settle();
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      if (settled) return;
      settle();
      const missing = [...expected].filter((t) => !streams.has(t));
      reject(new Error(`timed out after ${options.streamCreationTimeoutMs} ms waiting for the client to create streams: ${missing.join(", ")}`));
    }, options.streamCreationTimeoutMs);
    signal.addEventListener("abort", onAbort, { once: true });
    if (signal.aborted) onAbort();

    spdy.onStream((stream) => {
      const type = headerValue(stream, "streamType");
      if (settled || !isStreamType(type) || streams.has(type)) {
        log.debug({ streamType: type, stream: stream.id }, "refusing unexpected stream");
        spdy.refuse(stream);
        return;
      }
      spdy.accept(stream);
      streams.set(type, stream);
      if ([...expected].every((t) => streams.has(t))) {
        settle();
        resolve(wrap(spdy, streams, expected, version, options));
      }
    });
  });
}

function wrap(spdy: SpdySession, streams: Map<StreamType, SpdyStream>, expected: Set<StreamType>, version: number, options: SpdyRemoteCommandOptions): RemoteCommandTransport {
  const use = (type: StreamType): SpdyStream | undefined => (expected.has(type) ? streams.get(type) : undefined);
  // Streams the client opened but the request did not ask for are accepted and ignored.
  for (const [type, stream] of streams) if (type !== "stdin" && type !== "resize") spdy.discardInput(stream);
  for (const type of ["stdin", "resize"] as const) {
    const stream = streams.get(type);
    if (stream !== undefined && !expected.has(type)) spdy.discardInput(stream);
  }

  const stdin = use("stdin");
  const stdout = use("stdout");
  const stderr = use("stderr");
  const resize = use("resize");
  const error = spdy.writer(streams.get("error") as SpdyStream);
  let sizes: TerminalSizeQueue | undefined;
  if (resize !== undefined) sizes = readTerminalSizes(spdy.reader(resize), options.log);
  else if (options.tty) {
    // v1 and v2 have no resize stream: nothing will ever arrive.
    sizes = new TerminalSizeQueue();
    sizes.end();
  }
  return {
    ...(stdin && { stdin: spdy.reader(stdin) }),
    ...(stdout && { stdout: spdy.writer(stdout) }),
    ...(stderr && { stderr: spdy.writer(stderr) }),
    ...(sizes && { resize: sizes }),
    writeStatus: async (status) => {
      const bytes = encodeStatus(status, version >= 4);
      if (bytes !== undefined) error.write(bytes);
      await endWritable(error);
    },
    finish: () => spdy.finish(options.closeGraceMs),
  };
}
