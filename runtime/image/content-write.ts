// One Content.Write call. containerd answers every message in order; the
// answers to WRITE are only counted, the ones to STAT and COMMIT awaited.
//
// What a download holds in memory is bounded here. A blob's bytes are copied
// once, from the registry's socket chunks into the buffer their WRITE message
// is sent from, behind room for the message's protobuf header; grpc-js copies
// them once more, into its frame. At most WINDOW messages are sent and not
// yet answered (and none is written while the stream asks to drain), so
// containerd's answers pace the download. An answered message has been framed
// and received, and grpc-js never resends on a call that has had an answer,
// so its buffer is filled again: a blob holds WINDOW + 1 buffers and at most
// WINDOW frames, whatever its size.
import type { ClientDuplexStream, MethodDefinition } from "@grpc/grpc-js";
import { setTimeout as sleep } from "node:timers/promises";
import type { Containerd, Leased } from "../containerd/client.js";
import { fromGrpc } from "../containerd/errors.js";
import type { WriteContentRequest__Input } from "../../proto/gen/containerd/containerd/services/content/v1/WriteContentRequest.js";
import type { WriteContentResponse } from "../../proto/gen/containerd/containerd/services/content/v1/WriteContentResponse.js";

// Blob bytes per WRITE message. containerd's own client writes 1 MiB; half
// that halves what each download holds and pulls as fast (npm run bench pull).
const CHUNK = 512 << 10;
const WINDOW = 2;
/** Bytes kept free in front of a WRITE's data: its action, offset, and data's tag and length fit. */
export const HEADROOM = 24;
const CLOSE_WAIT_MS = 5000;

type Request = WriteContentRequest__Input | EncodedWrite;
type WriteMethod = MethodDefinition<WriteContentRequest__Input, WriteContentResponse>;

/** A WRITE message already encoded in the buffer its data was copied into. */
class EncodedWrite {
  constructor(readonly bytes: Buffer) {}
}

export class WriteSession {
  readonly #call: ClientDuplexStream<Request, WriteContentResponse>;
  readonly #ended: Promise<void>;
  /** buffers of the WRITE messages sent and not answered yet, in order */
  readonly #unanswered: Buffer[] = [];
  /** buffers of answered WRITE messages, to fill again */
  readonly #free: Buffer[] = [];
  #filling: Buffer | undefined;
  #filled = 0;
  #position = 0;
  #size = Number.POSITIVE_INFINITY;
  #waiter: { resolve: (r: WriteContentResponse) => void; reject: (e: Error) => void } | undefined;
  #roomWaiter: { resolve: () => void; reject: (e: unknown) => void } | undefined;
  #error: Error | undefined;
  #closed = false;
  readonly #signal: AbortSignal;
  readonly #onAbort: () => void;

  constructor(c: Containerd, leased: Leased, ref: string, signal: AbortSignal) {
    const method = (c.raw.content.constructor as unknown as { service: { Write: WriteMethod } }).service.Write;
    const serialize = (req: Request): Buffer => (req instanceof EncodedWrite ? req.bytes : method.requestSerialize(req));
    this.#call = c.raw.content.makeBidiStreamRequest(method.path, serialize, method.responseDeserialize, leased.metadata());
    // A caller giving up stops waiting for answers; the call itself ends in close().
    this.#signal = signal;
    this.#onAbort = () => {
      const w = this.#waiter;
      this.#waiter = undefined;
      w?.reject(signal.reason);
      this.#wake(signal.reason);
    };
    signal.addEventListener("abort", this.#onAbort, { once: true });
    this.#ended = new Promise((resolve) => this.#call.once("status", () => resolve()));
    this.#call.on("data", (res: WriteContentResponse) => {
      const answered = this.#unanswered.shift();
      if (answered !== undefined) {
        this.#free.push(answered);
        this.#wake();
        return;
      }
      const w = this.#waiter;
      this.#waiter = undefined;
      w?.resolve(res);
    });
    this.#call.on("drain", () => this.#wake());
    this.#call.on("error", (err: unknown) => this.#fail(fromGrpc(`content.Write ${ref}`, err)));
    this.#call.on("end", () => this.#fail(new Error(`content.Write ${ref}: containerd ended the stream`)));
  }

  /** The blob offset after the last byte sent in a WRITE. */
  get position(): number {
    return this.#position;
  }

  /** Where the next WRITE starts (the offset the ingest is at), and the blob's size. */
  seek(offset: number, size: number): void {
    this.#position = offset;
    this.#size = size;
  }

  /** Sends a message and waits for its answer (every earlier answer comes first). */
  request(req: WriteContentRequest__Input): Promise<WriteContentResponse> {
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
      this.#call.write(req);
    });
  }

  /** Adds blob bytes to the WRITE message being filled, sending each one that fills up. */
  async write(chunk: Buffer): Promise<void> {
    for (let taken = 0; taken < chunk.length; ) {
      const buffer = (this.#filling ??= this.#free.pop() ?? this.#newBuffer());
      const n = chunk.copy(buffer, HEADROOM + this.#filled, taken);
      this.#filled += n;
      taken += n;
      if (HEADROOM + this.#filled === buffer.length) await this.flush();
    }
  }

  /**
   * Sends the bytes added since the last WRITE, once there is room in the
   * window (at once when `now`: what arrived before a transfer broke is kept).
   */
  async flush(now = false): Promise<void> {
    const buffer = this.#filling;
    const length = this.#filled;
    if (buffer === undefined || length === 0) return;
    while (!now && (this.#unanswered.length >= WINDOW || this.#call.writableNeedDrain) && !this.#error) {
      await new Promise<void>((resolve, reject) => (this.#roomWaiter = { resolve, reject }));
    }
    if (this.#error) throw this.#error;
    this.#filling = undefined;
    this.#filled = 0;
    this.#unanswered.push(buffer);
    this.#call.write(new EncodedWrite(encodeWrite(buffer, this.#position, length)));
    this.#position += length;
  }

  /**
   * Ends the call and waits until containerd has let go of the ingest (its
   * lock): gracefully, so every byte sent is kept; cancelled when that takes long.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#signal.removeEventListener("abort", this.#onAbort);
    this.#call.end();
    if (await this.#endedWithin(CLOSE_WAIT_MS)) return;
    this.#call.cancel();
    await this.#endedWithin(CLOSE_WAIT_MS);
  }

  // A small blob (a manifest) or a blob's last bytes need no whole CHUNK.
  #newBuffer(): Buffer {
    const rest = this.#size - this.#position;
    return Buffer.allocUnsafe(HEADROOM + (rest > 0 && rest < CHUNK ? rest : CHUNK));
  }

  #fail(err: unknown): void {
    this.#error ??= err instanceof Error ? err : new Error(String(err));
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.reject(this.#error);
    this.#wake(this.#error);
  }

  #wake(err?: unknown): void {
    const w = this.#roomWaiter;
    this.#roomWaiter = undefined;
    if (err === undefined) w?.resolve();
    else w?.reject(err);
  }

  async #endedWithin(ms: number): Promise<boolean> {
    const timer = new AbortController();
    const ended = await Promise.race([
      this.#ended.then(() => true),
      sleep(ms, false, { signal: timer.signal }).catch(() => false),
    ]);
    timer.abort();
    return ended;
  }
}

/**
 * WriteContentRequest{action: WRITE, offset, data} for the `length` bytes at
 * HEADROOM in `buffer`, its header encoded in place in front of them.
 */
export function encodeWrite(buffer: Buffer, offset: number, length: number): Buffer {
  const header = [0x08, 1]; // field 1 (action), varint: WRITE
  if (offset > 0) header.push(0x28, ...varint(offset)); // field 5 (offset), varint
  header.push(0x32, ...varint(length)); // field 6 (data), length-delimited
  const start = HEADROOM - header.length;
  buffer.set(header, start);
  return buffer.subarray(start, HEADROOM + length);
}

function varint(n: number): number[] {
  const bytes: number[] = [];
  for (; n >= 0x80; n = Math.floor(n / 0x80)) bytes.push((n % 0x80) | 0x80);
  bytes.push(n);
  return bytes;
}
