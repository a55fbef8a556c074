// What the streaming server needs from the container runtime. The server speaks
// the Kubernetes streaming protocols; the runtime runs the processes and opens
// the sockets.
import type { Duplex, Readable, Writable } from "node:stream";

/** CRI ExecRequest, in crib's words. */
export interface ExecRequest {
  containerId: string;
  cmd: string[];
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

/** CRI AttachRequest, in crib's words. */
export interface AttachRequest {
  containerId: string;
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

/** CRI PortForwardRequest. `ports` names the ports a WebSocket client gets; SPDY clients name a port per stream. */
export interface PortForwardRequest {
  podSandboxId: string;
  ports: number[];
}

export interface TerminalSize {
  width: number;
  height: number;
}

/**
 * The client's end of an exec or attach, as node streams. A stream is present
 * exactly when the request asked for it.
 */
export interface ExecStreams {
  /** Bytes from the client; ends when the client closes its stdin (or the session ends). */
  readonly stdin?: Readable;
  /** To the client. Backpressure is the client's; the server ends it once the call settles, if the runtime did not. */
  readonly stdout?: Writable;
  readonly stderr?: Writable;
  readonly tty: boolean;
  /**
   * Terminal sizes from the client, in order; present when `tty` is set. When the
   * runtime lags, only the newest unread size is kept. Ends with the session.
   */
  readonly resize?: AsyncIterable<TerminalSize>;
}

export interface PortForwardTarget {
  podSandboxId: string;
  port: number;
}

export interface StreamingRuntime {
  /**
   * Runs `req.cmd` in the container and resolves with its exit code once it has
   * exited and its output has been written. `signal` fires when the client goes
   * away, the session idles out or the server closes: kill the process and free
   * what it holds. A rejection is reported to the client as an internal error.
   */
  exec(req: ExecRequest, streams: ExecStreams, signal: AbortSignal): Promise<{ exitCode: number }>;
  /** Attaches to the container's main process until it exits or `signal` fires. */
  attach(req: AttachRequest, streams: ExecStreams, signal: AbortSignal): Promise<void>;
  /**
   * Opens a TCP connection to `port` inside the sandbox's network namespace. The
   * server owns the returned socket and destroys it when the forwarded connection
   * ends; `allowHalfOpen` sockets keep half-closes faithful. `signal` fires if the
   * client goes away while connecting.
   */
  portForward(target: PortForwardTarget, signal: AbortSignal): Promise<Duplex>;
}

/** Why a session's signal fired; `signal.reason` is one of these. */
export class StreamSessionEnded extends Error {
  constructor(readonly why: "client-disconnected" | "idle-timeout" | "server-closed" | "completed", message: string) {
    super(message);
    this.name = "AbortError";
  }
}
