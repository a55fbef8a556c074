// One subscription to containerd's task and image events for crib's namespace,
// kept open across containerd restarts. Each (re)connect calls `onConnect`
// first so the owner can reconcile what it missed while the stream was down;
// `connection` changes with every (re)connect and is undefined while down, so
// a cache kept coherent by these events knows when it cannot trust them.
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
  | { kind: "start"; containerId: string; pid: number }
  /** an image record was created, updated or deleted (by crib or anyone else) */
  | { kind: "image"; topic: string };

interface TimestampLike { seconds: string | number; nanos: number }
export const toDate = (ts: TimestampLike | null | undefined): Date =>
  ts ? new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6)) : new Date(0);
export const toNanos = (ts: TimestampLike | null | undefined): bigint =>
  ts ? BigInt(ts.seconds) * 1_000_000_000n + BigInt(ts.nanos) : 0n;

const SYNC_TOPIC = "/crib/sync";
const SYNC_RETRY_MS = 1000;

export class TaskEvents {
  readonly #client: Containerd;
  readonly #log: Logger;
  readonly #listeners = new Set<(e: TaskEvent) => void>();
  #stream: ClientReadableStream<unknown> | undefined;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  #connections = 0;
  #connection: number | undefined;

  constructor(client: Containerd, log: Logger, readonly onConnect: () => Promise<void>) {
    this.#client = client;
    this.#log = log;
  }

  on(listener: (e: TaskEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Which connection of the stream is up (a new number after each reconnect), or undefined while it is down. */
  get connection(): number | undefined {
    return this.#connection;
  }

  start(): void {
    this.#connect(0);
  }

  #connect(attempt: number): void {
    if (this.#closed) return;
    const stream = this.#client.raw.events.Subscribe(
      { filters: [`namespace==${this.#client.namespace},topic~="^/(tasks|images|crib)/"`] },
      this.#client.metadata(),
    ) as ClientReadableStream<unknown>;
    this.#stream = stream;
    let connected = false;
    const connectedNow = () => {
      if (connected) return;
      connected = true;
      attempt = 0;
      this.#connection = ++this.#connections;
      void this.onConnect().catch((err: unknown) => this.#log.warn({ err: String(err) }, "reconcile after (re)connect failed"));
    };
    stream.on("metadata", connectedNow);
    stream.on("data", (envelope: { topic: string; event: { type_url: string; value: Buffer } | null }) => {
      connectedNow();
      if (envelope.topic === SYNC_TOPIC) return;
      if (envelope.topic.startsWith("/images/")) {
        for (const l of this.#listeners) l({ kind: "image", topic: envelope.topic });
        return;
      }
      if (!envelope.event) return;
      const event = this.#decode(envelope.event);
      if (event) for (const l of this.#listeners) l(event);
    });
    const retry = () => {
      if (this.#closed || this.#stream !== stream) return;
      this.#stream = undefined;
      this.#connection = undefined;
      const delay = Math.min(5000, 100 * 2 ** Math.min(attempt, 6));
      this.#timer = setTimeout(() => this.#connect(attempt + 1), delay);
    };
    stream.on("error", retry);
    stream.on("end", retry);
    this.#sync(stream, () => connected);
  }

  // containerd sends a subscription's headers with its first event only: an
  // event crib publishes itself shows when the subscription is in place.
  #sync(stream: ClientReadableStream<unknown>, connected: () => boolean): void {
    if (this.#closed || this.#stream !== stream || connected()) return;
    this.#client.events.Publish({ topic: SYNC_TOPIC, event: { type_url: SYNC_TOPIC.slice(1).replace("/", "."), value: Buffer.alloc(0) } })
      .catch((err: unknown) => this.#log.debug({ err: String(err) }, "publishing the events sync marker"));
    setTimeout(() => this.#sync(stream, connected), SYNC_RETRY_MS).unref();
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
    this.#connection = undefined;
    clearTimeout(this.#timer);
    this.#stream?.cancel();
  }
}
