// ExecSync: run a command in a running container and return its output (each
// stream capped) and exit code; the timeout kills it and answers DEADLINE_EXCEEDED.
import { join } from "node:path";
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import type { Container } from "./store/containers.js";
import { CribError, failedPrecondition, invalidArgument, notFound, required } from "../runtime/errors.js";
import { specOf } from "../runtime/containerd/tasks.js";
import { ExecProcess, collect, lastDataAt, type OciProcess } from "../runtime/exec.js";
import { startFailure } from "../runtime/containerd/start-failure.js";

const processCache = new Map<string, OciProcess>();
const OUTPUT_DRAIN_MS = 2000;
const OUTPUT_QUIET_MS = 100;
const KILL_WAIT_MS = 5000;
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The container's process from its OCI spec: the base of every exec. */
export async function baseProcess(deps: Deps, c: Container, signal?: AbortSignal): Promise<OciProcess> {
  const cached = processCache.get(c.id);
  if (cached) return cached;
  const spec = (await specOf(deps.containerd, c.id, signal)) as { process: OciProcess } | undefined;
  if (!spec) throw notFound(`container ${c.id} has no record in containerd`);
  processCache.set(c.id, spec.process);
  return spec.process;
}

export function forgetProcess(id: string): void {
  processCache.delete(id);
}

export function requireRunning(c: Container): void {
  if (c.status.state !== "CONTAINER_RUNNING") {
    throw failedPrecondition(`container ${c.id} is not running (state ${c.status.state.replace("CONTAINER_", "").toLowerCase()})`);
  }
}

export async function execSync(deps: Deps, req: cri.ExecSyncRequest, ctx: CallContext): Promise<cri.ExecSyncResponse__Input> {
  const c = deps.containers.get(required(req.container_id, "container_id"));
  if (req.cmd.length === 0) throw invalidArgument("cmd is required");
  requireRunning(c);
  const base = await baseProcess(deps, c, ctx.signal);
  const cap = deps.config.containers.exec_sync_max_output;
  const exec = new ExecProcess(deps.containerd, {
    containerId: c.id, process: { ...base, args: req.cmd, terminal: false },
    stdin: false, stdout: true, stderr: true, tty: false, dir: join(deps.config.state, "exec"), fifos: deps.fifos,
  });
  // a timer takes at most 2^31-1 ms (24.8 days): a longer one fires at once, so the timeout would end the command at start
  const timeout = Number(req.timeout) > 0 ? AbortSignal.timeout(Math.min(Number(req.timeout) * 1000, MAX_TIMER_MS)) : undefined;
  const signal = timeout ? AbortSignal.any([ctx.signal, timeout]) : ctx.signal;
  try {
    const stopCollecting = new AbortController();
    const none: Promise<{ data: Buffer; truncated: boolean }> = Promise.resolve({ data: Buffer.alloc(0), truncated: false });
    let out = none;
    let err = none;
    let exitCode: number;
    try {
      // collect from the start: a quick process's output (and EOF) must not pass by unread
      await exec.start(signal, (p) => {
        out = collect(p.stdout, cap, stopCollecting.signal);
        err = collect(p.stderr, cap, stopCollecting.signal);
      });
      exitCode = await exec.wait(signal);
    } catch (e) {
      // kill it and see it gone before answering, as containerd does: a caller
      // that checks right after the timeout finds no straggler
      if (exec.pid > 0) {
        await exec.kill().catch((err: unknown) => ctx.log.warn({ err: String(err), exec: exec.execId }, "killing a timed-out exec"));
        await exec.wait(AbortSignal.timeout(KILL_WAIT_MS)).catch(() => undefined);
      }
      if (timeout?.aborted) throw new CribError("deadline-exceeded", `command ${JSON.stringify(req.cmd)} in container ${c.id} timed out after ${req.timeout}s`);
      // runc could not start the program: say so in the CRI's words, not as UNKNOWN with runc's text
      const why = exec.pid > 0 ? undefined : startFailure(e);
      if (why && why.kind !== "ended before start") {
        throw new CribError(why.kind === "not found" ? "not-found" : "failed-precondition", `cmd[0] ${JSON.stringify(req.cmd[0] ?? "")} in container ${c.id}: ${why.kind}`);
      }
      throw e;
    }
    // The process is gone and its output normally ends at once; should a
    // FIFO stay open (a child holding stdout), stop once it has been quiet.
    let ended = false;
    const outputs = Promise.all([out, err]).then(() => { ended = true; });
    const exitedAt = Date.now();
    while (!ended && Date.now() - exitedAt < OUTPUT_DRAIN_MS) {
      await Promise.race([outputs, new Promise((r) => setTimeout(r, 20))]);
      if (!ended && Date.now() - Math.max(exitedAt, lastDataAt(exec.stdout), lastDataAt(exec.stderr)) >= OUTPUT_QUIET_MS) break;
    }
    if (!ended) stopCollecting.abort();
    const [stdout, stderr] = await Promise.all([out, err]);
    if (stdout.truncated || stderr.truncated) ctx.log.warn({ container: c.id.slice(0, 12), cap }, "ExecSync output truncated");
    return {
      stdout: stdout.truncated ? Buffer.concat([stdout.data.subarray(0, Math.max(0, cap - 64)), Buffer.from(`\n[crib: output truncated at ${cap} bytes]\n`)]) : stdout.data,
      stderr: stderr.truncated ? Buffer.concat([stderr.data.subarray(0, Math.max(0, cap - 64)), Buffer.from(`\n[crib: output truncated at ${cap} bytes]\n`)]) : stderr.data,
      exit_code: exitCode,
    };
  } finally {
    // removing the exec from containerd need not delay the reply
    void exec.close().catch((err: unknown) => ctx.log.warn({ err: String(err), exec: exec.execId }, "exec cleanup failed"));
  }
}
