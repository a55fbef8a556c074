// The worker thread that starts crib's short-lived child processes (CNI
// plugins, ip, mount, mkfifo) for runtime/process-runner.ts. Its only job is
// to make the blocking part of a spawn (fork, then waiting until the child has
// exec'd) happen here, off the thread that serves rpcs.
import { spawn, type ChildProcess } from "node:child_process";
import { parentPort } from "node:worker_threads";
import type { RunMessage, RunReply } from "./process-runner.js";

const port = parentPort;
if (!port) throw new Error("runtime/spawn-thread.js runs as a worker thread");

const children = new Map<number, { child: ChildProcess; group: boolean }>();

function kill(id: number): void {
  const entry = children.get(id);
  const pid = entry?.child.pid;
  if (!entry || pid === undefined) return;
  try {
    if (entry.group) process.kill(-pid, "SIGKILL");
    else entry.child.kill("SIGKILL");
  } catch {
    // gone already
  }
}

function run(m: Extract<RunMessage, { kind: "run" }>): void {
  const reply = (r: RunReply): void => port!.postMessage(r);
  let child: ChildProcess;
  try {
    child = spawn(m.file, m.args, { env: m.env, stdio: ["pipe", "pipe", "pipe"], detached: m.group });
  } catch (err) {
    reply({ id: m.id, kind: "error", message: (err as Error).message, code: (err as NodeJS.ErrnoException).code ?? "" });
    return;
  }
  children.set(m.id, { child, group: m.group });
  // the first max bytes of each are kept; the rest is read and dropped
  const keep = (stream: NodeJS.ReadableStream, max: number): Buffer[] => {
    const kept: Buffer[] = [];
    let bytes = 0;
    stream.on("data", (chunk: Buffer) => {
      if (bytes < max) kept.push(chunk.subarray(0, max - bytes));
      bytes += chunk.length;
    });
    return kept;
  };
  const out = keep(child.stdout!, m.maxStdout);
  const err = keep(child.stderr!, m.maxStderr);
  // a child that exits without reading stdin gives EPIPE; its exit status tells the story
  child.stdin!.on("error", () => {});
  child.stdin!.end(m.input);
  let answered = false;
  child.on("error", (e: NodeJS.ErrnoException) => {
    if (child.pid !== undefined || answered) return;
    answered = true;
    children.delete(m.id);
    reply({ id: m.id, kind: "error", message: e.message, code: e.code ?? "" });
  });
  child.once("close", (code, signal) => {
    children.delete(m.id);
    if (answered) return;
    answered = true;
    const stdout = Buffer.concat(out);
    const stderr = Buffer.concat(err);
    reply({ id: m.id, kind: "exit", pid: child.pid ?? 0, code, signal, stdout, stderr });
  });
  if (child.pid !== undefined) reply({ id: m.id, kind: "started", pid: child.pid });
}

port.on("message", (m: RunMessage) => {
  if (m.kind === "run") run(m);
  else kill(m.id);
});
