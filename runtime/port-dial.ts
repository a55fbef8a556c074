// TCP connections to 127.0.0.1:<port> as a pod sees it, for port forwarding.
//
// A socket lives in the network namespace it was created in, and creating one in
// a pod's namespace needs setns(CLONE_NEWNET) on the calling thread, which Node
// cannot do for one of its own threads. So each forwarded connection is a small
// helper process entered into the pod's namespace that does the connect and
// copies bytes: `nsenter --net=<netns> socat STDIO TCP:127.0.0.1:<port>`, the
// same pair kubelet's dockershim used. nsenter (util-linux) execs socat, so it
// is one process per connection, which the returned stream owns: destroying the
// stream kills it, and its exit ends the stream. Pods need no tools of their own.
// socat rather than a helper of crib's own: it is packaged, does half-closes
// faithfully (shut-close on EOF; -t keeps the other direction going until the
// caller's own half-close timeout ends it) and reports a failed connect with the
// errno, which is all a forwarded connection needs. A process per connection
// costs a fork+exec (a few ms) and one extra copy of the bytes (see the
// streaming benchmark); a host-network pod skips all of it.
import { spawn, type ChildProcessByStdio } from "node:child_process";
import { connect, type Socket } from "node:net";
import { Duplex, type Readable, type Writable } from "node:stream";

export interface DialOptions {
  /** The pod's network namespace; "" dials from the node's (host-network pods). */
  netnsPath: string;
  port: number;
  signal: AbortSignal;
  /** Default "nsenter". */
  nsenter?: string;
  /** Default "socat". */
  socat?: string;
}

/** socat's notice once both ends are open (with -d -d). */
const CONNECTED = "starting data transfer loop";
const MAX_STDERR = 8192;

/** A connection to 127.0.0.1:`port` in the namespace; half-closes pass through (allowHalfOpen). */
export function dialPort(options: DialOptions): Promise<Duplex> {
  if (options.netnsPath === "") return dialHost(options.port, options.signal);
  return dialInNetns(options);
}

async function dialHost(port: number, signal: AbortSignal): Promise<Socket> {
  const socket = connect({ host: "127.0.0.1", port, allowHalfOpen: true, noDelay: true });
  try {
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => reject(signal.reason as Error);
      signal.addEventListener("abort", onAbort, { once: true });
      socket.once("connect", () => { signal.removeEventListener("abort", onAbort); resolve(); });
      socket.once("error", (err: NodeJS.ErrnoException) => {
        signal.removeEventListener("abort", onAbort);
        reject(new Error(`dial tcp 127.0.0.1:${port}: connect: ${err.code === "ECONNREFUSED" ? "connection refused" : err.message}`));
      });
    });
  } catch (err) {
    socket.destroy();
    throw err;
  }
  return socket;
}

type Helper = ChildProcessByStdio<Writable, Readable, Readable>;

async function dialInNetns(options: DialOptions): Promise<Duplex> {
  const { netnsPath, port, signal } = options;
  signal.throwIfAborted();
  // -t: after one direction ends the other may go on; the caller decides when to give up.
  const args = [`--net=${netnsPath}`, "--", options.socat ?? "socat", "-d", "-d", "-t", "86400", "-b", "65536",
    "STDIO,shut-close", `TCP4:127.0.0.1:${port},nodelay`];
  const helper: Helper = spawn(options.nsenter ?? "nsenter", args, { stdio: ["pipe", "pipe", "pipe"] });
  helper.stdin.on("error", () => undefined);
  let stderr = "";
  try {
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => reject(signal.reason as Error);
      // "close", not "exit": by then everything it printed has been read.
      const onClose = (code: number | null): void => reject(new Error(helperFailure(stderr, port, netnsPath, code)));
      const onData = (chunk: Buffer): void => {
        stderr = (stderr + chunk.toString()).slice(-MAX_STDERR);
        if (stderr.includes(CONNECTED)) done(resolve);
      };
      const done = (settle: () => void): void => {
        signal.removeEventListener("abort", onAbort);
        helper.off("close", onClose);
        helper.stderr.off("data", onData);
        settle();
      };
      signal.addEventListener("abort", onAbort, { once: true });
      helper.once("error", (err) => done(() => reject(err)));
      helper.once("close", onClose);
      helper.stderr.on("data", onData);
    });
  } catch (err) {
    helper.kill("SIGKILL");
    throw err;
  }
  helper.stderr.resume(); // socat's notices about EOFs; nobody reads them
  return new HelperConnection(helper);
}

/** Why the helper gave up, worded as Go's net.Dial would (kubelet's message); nsenter's own words otherwise. */
function helperFailure(stderr: string, port: number, netnsPath: string, code: number | null): string {
  const lines = stderr.split("\n").map((l) => l.trim()).filter(Boolean).reverse();
  const socatError = lines.find((l) => / socat\[\d+\] E /.test(l))?.replace(/^.* socat\[\d+\] E /, "");
  if (socatError !== undefined) {
    const errno = /^connect\(.*\): (.+)$/.exec(socatError)?.[1];
    return `dial tcp 127.0.0.1:${port}: ${errno === undefined ? socatError : `connect: ${errno.toLowerCase()}`}`;
  }
  const other = lines.find((l) => !/ socat\[\d+\] [NIWD] /.test(l));
  return `connecting in network namespace ${netnsPath}: ${other ?? `nsenter and socat exited with ${code ?? "a signal"}`}`;
}

/** The helper's stdin and stdout as one stream; owns the helper process. */
class HelperConnection extends Duplex {
  readonly #helper: Helper;
  #exited = false;

  constructor(helper: Helper) {
    super({ allowHalfOpen: true });
    this.#helper = helper;
    // Both directions are done once socat has exited: end the stream once what it sent has been read.
    helper.once("close", () => {
      this.#exited = true;
      if (this.readableEnded) this.destroy();
      else this.once("end", () => this.destroy());
    });
    helper.stdout.on("data", (chunk: Buffer) => {
      if (!this.push(chunk)) helper.stdout.pause();
    });
    helper.stdout.once("end", () => this.push(null));
    helper.stdout.on("error", (err) => this.destroy(err));
    helper.stdin.on("error", (err) => this.destroy(err));
    helper.stdout.pause();
  }

  override _read(): void {
    this.#helper.stdout.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#helper.stdin.write(chunk, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#helper.stdin.end(callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.#exited) this.#helper.kill("SIGKILL");
    this.#helper.stdin.destroy();
    this.#helper.stdout.destroy();
    this.#helper.stderr.destroy();
    callback(error);
  }
}
