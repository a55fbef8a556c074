// What the streaming server runs a session against: exec as a containerd exec
// process on FIFOs, attach to a container's own stdio (runtime/container-io.ts),
// port forward through runtime/port-dial.ts. Every session ends with its signal
// (client gone, idle timeout, server closing) and leaves nothing behind.
import { join } from "node:path";
import type { Duplex, Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Logger } from "pino";
import type { Deps } from "./deps.js";
import type { Container } from "./store/containers.js";
import { baseProcess, requireRunning } from "./container-exec-sync.js";
import { failedPrecondition, invalidArgument } from "../runtime/errors.js";
import { ExecProcess } from "../runtime/exec.js";
import { dialPort } from "../runtime/port-dial.js";
import type { AttachRequest, ExecRequest, ExecStreams, PortForwardTarget, StreamingRuntime, TerminalSize } from "../runtime/streaming/streaming-runtime.js";

export class CribStreamingRuntime implements StreamingRuntime {
  readonly #deps: Deps;
  readonly #log: Logger;

  constructor(deps: Deps) {
    this.#deps = deps;
    this.#log = deps.log.child({ component: "streaming" });
  }

  async exec(req: ExecRequest, streams: ExecStreams, signal: AbortSignal): Promise<{ exitCode: number }> {
    const deps = this.#deps;
    const c = deps.containers.get(req.containerId);
    requireRunning(c);
    const base = await baseProcess(deps, c, signal);
    const proc = new ExecProcess(deps.containerd, {
      containerId: c.id, process: { ...base, args: req.cmd, terminal: req.tty },
      stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, tty: req.tty, dir: join(deps.config.state, "exec"), fifos: deps.fifos,
    });
    const log = this.#log.child({ container: c.id.slice(0, 12), exec: proc.execId });
    try {
      let outputs: Promise<unknown> = Promise.resolve();
      // copy from the start, so a quick process's output and EOF are not missed
      await proc.start(signal, (p) => { outputs = Promise.all([copyOut(p.stdout, streams.stdout), copyOut(p.stderr, streams.stderr)]); });
      log.debug({ cmd: req.cmd, tty: req.tty }, "exec started");
      feedStdin(streams.stdin, proc.stdin, () => proc.closeStdin());
      if (streams.resize) void applySizes(streams.resize, (size) => proc.resize(size.width, size.height), signal, log);
      let exitCode: number;
      try {
        exitCode = await proc.wait(signal);
      } catch (err) {
        if (signal.aborted) await proc.kill(9).catch(() => undefined);
        throw err;
      }
      // The process is gone; what it wrote (or a child still holding its stdout writes) goes to the client first.
      await untilAborted(outputs, signal);
      log.debug({ exitCode }, "exec finished");
      return { exitCode };
    } finally {
      await proc.close();
    }
  }

  async attach(req: AttachRequest, streams: ExecStreams, signal: AbortSignal): Promise<void> {
    const deps = this.#deps;
    const c = deps.containers.get(req.containerId);
    checkAttach(c, req);
    const io = deps.io.get(c.id);
    if (io === undefined) throw failedPrecondition(`container ${c.id}: crib holds no stdio for it`);
    const log = this.#log.child({ container: c.id.slice(0, 12), attach: true });
    const detach = io.attach({ ...(streams.stdout && { stdout: streams.stdout }), ...(streams.stderr && { stderr: streams.stderr }) });
    const stdin = req.stdin ? io.stdin : undefined;
    // Closing the attach's stdin closes the container's only when it was made with stdin_once (kubectl run -i --rm).
    const unfeed = feedStdin(streams.stdin, stdin, async () => {
      if (!c.config.stdin_once) return;
      stdin?.end();
      await deps.containerd.tasks.CloseIO({ container_id: c.id, exec_id: "", stdin: true });
    });
    try {
      if (streams.resize) {
        void applySizes(streams.resize, (size) => deps.containerd.tasks.ResizePty({ container_id: c.id, exec_id: "", ...size }).then(() => undefined), signal, log);
      }
      await untilAborted(io.done, signal);
      log.debug("attach ended: the container exited");
    } finally {
      detach();
      unfeed();
    }
  }

  async portForward(target: PortForwardTarget, signal: AbortSignal): Promise<Duplex> {
    const sandbox = this.#deps.sandboxes.get(target.podSandboxId);
    if (sandbox.state !== "SANDBOX_READY") throw failedPrecondition(`pod sandbox ${sandbox.id} is not ready`);
    return dialPort({ netnsPath: sandbox.netnsPath, port: target.port, signal });
  }
}

/** What an attach may ask of this container; throws naming the mismatch. */
export function checkAttach(c: Container, req: { tty: boolean; stdin: boolean }): void {
  requireRunning(c);
  // Whether the process has a terminal was decided when it started (kubelet passes the container's setting).
  if (req.tty !== c.config.tty) {
    throw invalidArgument(`attach to container ${c.id}: tty is ${req.tty} but the container was created with tty ${c.config.tty}`);
  }
  if (req.stdin && !c.config.stdin) throw invalidArgument(`attach to container ${c.id}: stdin requested but the container was created without stdin`);
}

/** Client stdin into the process; `closeStdin` passes the client's EOF on. Returns what undoes the wiring. */
function feedStdin(input: Readable | undefined, target: Writable | undefined, closeStdin: () => Promise<void>): () => void {
  if (input === undefined) return () => undefined;
  if (target === undefined) {
    input.resume();
    return () => undefined;
  }
  // The process may stop reading: drop what the client still sends.
  const onError = (): void => {
    input.unpipe(target);
    input.resume();
  };
  const onEnd = (): void => void closeStdin().catch(() => undefined);
  target.on("error", onError);
  input.pipe(target, { end: false });
  input.once("end", onEnd);
  return () => {
    input.unpipe(target);
    input.off("end", onEnd);
    target.off("error", onError);
  };
}

/** Process output to the client until EOF; ends the client's stream. */
async function copyOut(source: Readable | undefined, target: Writable | undefined): Promise<void> {
  if (source === undefined) return;
  if (target === undefined) {
    source.resume();
    return;
  }
  await pipeline(source, target).catch(() => undefined);
}

/** Applies each terminal size the client sends, in order, until the session ends. */
async function applySizes(sizes: AsyncIterable<TerminalSize>, resize: (size: TerminalSize) => Promise<void>, signal: AbortSignal, log: Logger): Promise<void> {
  for await (const size of sizes) {
    if (signal.aborted) return;
    await resize(size).catch((err: unknown) => log.debug({ err: err instanceof Error ? err.message : String(err), ...size }, "resize failed"));
  }
}

/** Waits for `work`, or rejects with the signal's reason once it fires. */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (value) => { signal.removeEventListener("abort", onAbort); resolve(value); },
      (err: unknown) => { signal.removeEventListener("abort", onAbort); reject(err as Error); },
    );
  });
}
