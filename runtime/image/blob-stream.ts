// A blob's bytes as they arrive, checked as they pass: the stream errors
// instead of ending when the size or the digest is wrong, so whoever pipes it
// into a store commits only verified data. Time without bytes is limited only
// while the reader wants more (a slow consumer is not a stalled registry).
import { createHash, type Hash } from "node:crypto";
import { Readable } from "node:stream";
import { DigestMismatchError, ProgressTimeoutError, TransferError } from "./errors.js";
import { parseDigest } from "./reference.js";
import { abortReason } from "./registry-http.js";

export interface BlobStreamOptions {
  digest: string;
  size: number;
  /** the first byte of the blob the reader wants */
  offset: number;
  /** the blob offset of the response's first byte: `offset` for a 206, 0 when the registry ignored Range */
  start: number;
  /** a hash already fed the blob's first `offset` bytes; without it a resumed stream checks only the size */
  hash?: Hash | undefined;
  idleTimeoutMs: number;
  /** names the blob and the host in errors: `blob sha256:… of 127.0.0.1:5000/app` */
  what: string;
  host: string;
  signal?: AbortSignal | undefined;
}

export class BlobStream extends Readable {
  readonly #source: Readable;
  readonly #o: BlobStreamOptions;
  readonly #hash: Hash | undefined;
  readonly #hashSkipped: boolean;
  #position: number;
  #wanting = false;
  #done = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(source: Readable, options: BlobStreamOptions) {
    // Chunks pass as the socket delivered them, one read at a time: a byte-mode
    // read() would concatenate what is buffered into a new buffer.
    super({ objectMode: true, highWaterMark: 1 });
    this.#source = source;
    this.#o = options;
    this.#position = options.start;
    if (options.hash !== undefined) {
      this.#hash = options.hash;
      this.#hashSkipped = false;
    } else if (options.start === 0) {
      this.#hash = createHash(parseDigest(options.digest).algorithm);
      this.#hashSkipped = true;
    } else {
      this.#hash = undefined;
      this.#hashSkipped = false;
    }
    source.on("readable", () => this.#pump());
    source.on("end", () => this.#finish());
    source.on("error", (err) => this.#fail(err));
    source.on("close", () => this.#fail(new Error("connection closed")));
  }

  /** Whether the digest is checked, not only the size. */
  get verifiesDigest(): boolean {
    return this.#hash !== undefined;
  }

  /** The host the bytes come from. */
  get host(): string {
    return this.#o.host;
  }

  /** The blob offset of the next byte: how far the download got. */
  get position(): number {
    return this.#position;
  }

  override _read(): void {
    this.#wanting = true;
    this.#pump();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#done = true;
    clearTimeout(this.#timer);
    this.#source.destroy();
    callback(err);
  }

  #pump(): void {
    while (this.#wanting && !this.#done) {
      const chunk = this.#source.read() as Buffer | null;
      if (chunk === null) {
        this.#arm();
        return;
      }
      clearTimeout(this.#timer);
      if (this.#position + chunk.length > this.#o.size) {
        this.#fail(new DigestMismatchError(`${this.#o.what}: ${this.#o.host} sent more than the ${this.#o.size} bytes of the blob`, { host: this.#o.host }));
        return;
      }
      let data = chunk;
      if (this.#position < this.#o.offset) {
        const skip = Math.min(data.length, this.#o.offset - this.#position);
        if (this.#hashSkipped) this.#hash?.update(data.subarray(0, skip));
        data = data.subarray(skip);
        this.#position += skip;
      }
      if (data.length > 0) {
        this.#hash?.update(data);
        this.#position += data.length;
        this.#wanting = this.push(data);
      }
    }
    clearTimeout(this.#timer);
  }

  #arm(): void {
    clearTimeout(this.#timer);
    const ms = this.#o.idleTimeoutMs;
    if (ms <= 0) return;
    this.#timer = setTimeout(() => {
      this.#fail(new ProgressTimeoutError(
        `${this.#o.what}: no data from ${this.#o.host} for ${ms} ms after ${this.#position} of ${this.#o.size} bytes`,
        { host: this.#o.host },
      ));
    }, ms);
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#timer);
    const { what, host, size, digest } = this.#o;
    if (this.#position !== size) {
      this.destroy(new DigestMismatchError(`${what}: ${host} sent ${this.#position} of ${size} bytes`, { host }));
      return;
    }
    if (this.#hash !== undefined) {
      const got = `${parseDigest(digest).algorithm}:${this.#hash.digest("hex")}`;
      if (got !== digest) {
        this.destroy(new DigestMismatchError(`${what}: ${host} sent content with digest ${got}`, { host }));
        return;
      }
    }
    this.push(null);
  }

  #fail(err: unknown): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#timer);
    const { what, host, size, signal } = this.#o;
    let error: Error;
    if (signal?.aborted) {
      const reason = abortReason(signal);
      error = reason instanceof Error ? reason : new Error(String(reason));
    } else if (err instanceof DigestMismatchError || err instanceof TransferError) {
      error = err;
    } else {
      const cause = err instanceof Error ? err.message : String(err);
      error = new TransferError(`${what}: connection to ${host} broke after ${this.#position} of ${size} bytes: ${cause}`, { host, cause: err });
    }
    this.destroy(error);
  }
}
