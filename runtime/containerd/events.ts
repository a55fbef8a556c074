// One subscription to containerd's task events for crib's namespace, kept open
// across containerd restarts. Each (re)connect calls `onConnect` first so the
// owner can reconcile what it missed while the stream was down.
import type { ClientReadableStream } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { decodeAny } from "../../proto/load.js";
import type { TaskExit } from "../../proto/gen/containerd/containerd/events/TaskExit.js";
import type { TaskOOM } from "../../proto/gen/containerd/containerd/events/TaskOOM.js";
import type { TaskStart } from "../../proto/gen/containerd/containerd/events/TaskStart.js";
import type { Containerd } from "./client.js";

export type TaskEvent =
  | { kind: "exit"; containerId: string; execId: string; pid: number; exitStatus: number; exitedAt: Date }
  | { kind: "oom"; containerId: string }
  | { kind: "start"; containerId: string; pid: number };

interface TimestampLike { seconds: string | number; nanos: number }
export const toDate = (ts: TimestampLike | null | undefined): Date =>
  ts ? new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6)) : new Date(0);
export const toNanos = (ts: TimestampLike | null | undefined): bigint =>
  ts ? BigInt(ts.seconds) * 1_000_000_000n + BigInt(ts.nanos) : 0n;

export class TaskEvents {
  readonly #client: Containerd;
  readonly #log: Logger;
  readonly #listeners = new Set<(e: TaskEvent) => void>();
  #stream: ClientReadableStream<unknown> | undefined;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(client: Containerd, log: Logger, readonly onConnect: () => Promise<void>) {
    this.#client = client;
    this.#log = log;
  }

  on(listener: (e: TaskEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  start(): void {
    this.#connect(0);
  }

  #connect(attempt: number): void {
    if (this.#closed) return;
    const stream = this.#client.raw.events.Subscribe(
      { filters: [`namespace==${this.#client.namespace},topic~="^/tasks/"`] },
      this.#client.metadata(),
    ) as ClientReadableStream<unknown>;
    this.#stream = stream;
    let connected = false;
    const connectedNow = () => {
      if (connected) return;
      connected = true;
      attempt = 0;
      void this.onConnect().catch((err: unknown) => this.#log.warn({ err: String(err) }, "reconcile after (re)connect failed"));
    };
    stream.on("metadata", connectedNow);
    stream.on("data", (envelope: { topic: string; event: { type_url: string; value: Buffer } | null }) => {
      connectedNow();
      if (!envelope.event) return;
      const event = this.#decode(envelope.event);
      if (event) for (const l of this.#listeners) l(event);
    });
    const retry = () => {
      if (this.#closed || this.#stream !== stream) return;
      this.#stream = undefined;
      const delay = Math.min(5000, 100 * 2 ** Math.min(attempt, 6));
      this.#timer = setTimeout(() => this.#connect(attempt + 1), delay);
    };
    stream.on("error", retry);
    stream.on("end", retry);
  }

  #decode(any: { type_url: string; value: Buffer }): TaskEvent | undefined {
    let decoded;
    try {
      decoded = decodeAny(any);
    } catch {
      return undefined;
    }
    switch (decoded.type) {
      case "containerd.events.TaskExit": {
        const e = decoded.value as TaskExit;
        return { kind: "exit", containerId: e.container_id, execId: e.id, pid: e.pid, exitStatus: e.exit_status, exitedAt: toDate(e.exited_at) };
      }
      case "containerd.events.TaskOOM":
        return { kind: "oom", containerId: (decoded.value as TaskOOM).container_id };
      case "containerd.events.TaskStart": {
        const e = decoded.value as TaskStart;
        return { kind: "start", containerId: e.container_id, pid: e.pid };
      }
      default:
        return undefined;
    }
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#stream?.cancel();
  }
}
