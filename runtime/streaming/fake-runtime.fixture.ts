// A StreamingRuntime for the protocol tests: exec runs a host process, a few
// `fake-*` commands script behaviour, port forward dials 127.0.0.1.
import { spawn } from "node:child_process";
import { connect, createServer, type Server, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { finished } from "node:stream/promises";
import type { AttachRequest, ExecRequest, ExecStreams, PortForwardTarget, StreamingRuntime, TerminalSize } from "./streaming-runtime.js";

export interface RecordedCall {
  req: ExecRequest | AttachRequest;
  signal: AbortSignal;
  settled: boolean;
}

export class FakeRuntime implements StreamingRuntime {
  readonly calls: RecordedCall[] = [];
  readonly resizes: TerminalSize[] = [];
  /** Where port forwards go: pod port → local port. Unknown ports are refused. */
  readonly ports = new Map<number, number>();
  portForwards = 0;

  async exec(req: ExecRequest, streams: ExecStreams, signal: AbortSignal): Promise<{ exitCode: number }> {
    const call: RecordedCall = { req, signal, settled: false };
    this.calls.push(call);
    try {
      switch (req.cmd[0]) {
        case "fake-wait-for-abort":
          // Holds the session until its signal fires.
          await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
          return { exitCode: 137 };
        case "fake-resize": {
          // Reports each size it sees until it sees the one named in its arguments.
          const last = req.cmd[1];
          for await (const size of streams.resize ?? []) {
            this.resizes.push(size);
            streams.stdout?.write(`${size.width}x${size.height}\n`);
            if (`${size.width}x${size.height}` === last) break;
          }
          return { exitCode: 0 };
        }
        case "fake-fail":
          throw new Error(`container "${req.containerId}" is not running`);
        default:
          return { exitCode: await runProcess(req.cmd, streams, signal) };
      }
    } finally {
      call.settled = true;
    }
  }

  async attach(req: AttachRequest, streams: ExecStreams, signal: AbortSignal): Promise<void> {
    const call: RecordedCall = { req, signal, settled: false };
    this.calls.push(call);
    // The "main process" echoes stdin to stdout.
    if (streams.stdin !== undefined && streams.stdout !== undefined) {
      streams.stdin.pipe(streams.stdout);
      await finished(streams.stdout).catch(() => undefined);
    }
    call.settled = true;
  }

  async portForward(target: PortForwardTarget, signal: AbortSignal): Promise<Duplex> {
    this.portForwards++;
    const local = this.ports.get(target.port);
    if (local === undefined) throw new Error(`dial tcp 127.0.0.1:${target.port}: connect: connection refused`);
    const socket = connect({ host: "127.0.0.1", port: local, allowHalfOpen: true, signal });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    return socket;
  }
}

/** Runs cmd on the host with the session's streams; resolves with the exit code once the output is written. */
async function runProcess(cmd: string[], streams: ExecStreams, signal: AbortSignal): Promise<number> {
  const [file = "", ...args] = cmd;
  const child = spawn(file, args, { stdio: "pipe" });
  const onAbort = (): void => void child.kill("SIGKILL");
  signal.addEventListener("abort", onAbort, { once: true });
  child.stdin.on("error", () => undefined);
  if (streams.stdin !== undefined) streams.stdin.pipe(child.stdin);
  else child.stdin.end();
  const outputs: Promise<void>[] = [];
  if (streams.stdout !== undefined) {
    child.stdout.pipe(streams.stdout);
    outputs.push(finished(streams.stdout).catch(() => undefined));
  } else child.stdout.resume();
  if (streams.stderr !== undefined) {
    child.stderr.pipe(streams.stderr);
    outputs.push(finished(streams.stderr).catch(() => undefined));
  } else child.stderr.resume();
  const code = await new Promise<number>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (status, sig) => resolve(status ?? (sig === null ? 1 : 128 + 9)));
  });
  signal.removeEventListener("abort", onAbort);
  await Promise.all(outputs);
  return code;
}

/** A TCP echo server on 127.0.0.1 that passes half-closes on. */
export async function echoServer(): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  return {
    server,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}
