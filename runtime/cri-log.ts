// A container's output in the CRI log format kubelet reads:
//   <RFC3339Nano timestamp> <stdout|stderr> <P|F> <content>
// with containerd's rules (pkg/cri/io/logger.go): F ends a line, whose "\n"
// (or "\r\n") is not logged; a line longer than the max size is split into P
// pieces of exactly that size, the last piece F; what is left at EOF without a
// newline is a P entry. The encoder turns one FIFO read into one Buffer of
// entries, so a chatty container costs one write() per read, not per line.
import { close as closeFd, fstat as fstatFd, open as openFd, read as readFd, write as writeFd } from "node:fs";
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { promisify } from "node:util";

const open = promisify(openFd);
const close = promisify(closeFd);
const fstat = promisify(fstatFd);
const read = promisify(readFd);

const NL = 0x0a;
const CR = 0x0d;
const TAG_P = 0x50;
const TAG_F = 0x46;
/** "2024-01-02T03:04:05.678901234Z stdout F ": every entry's header is this long. */
export const HEADER_BYTES = 40;
/** max_log_line_size 0 (no limit) still keeps a line's unfinished tail bounded. */
const UNLIMITED_LINE = 1 << 20;

let clockMs = -1;
let clockSeq = 0;
let clockIso = Buffer.alloc(23);
/** Entries share the millisecond of their read; the 6 sub-millisecond digits count up so lines stay ordered. */
function tick(now: number): void {
  if (now === clockMs) return;
  clockMs = now;
  clockSeq = 0;
  clockIso = Buffer.from(new Date(now).toISOString().slice(0, 23), "latin1"); // 2024-01-02T03:04:05.678
}
const nextSeq = (): number => (clockSeq < 999_999 ? clockSeq++ : clockSeq);

/** RFC3339 with 9 fraction digits, as each entry's timestamp. */
export function timestamp(now = Date.now()): string {
  tick(now);
  return `${clockIso.toString("latin1")}${String(nextSeq()).padStart(6, "0")}Z`;
}

// Every container has two encoders, mostly idle (300 containers: 600): what they
// hold is allocated when used. The newline positions of a chunk are scratch,
// shared: encode() runs to its end before another call begins.
const NO_PENDING = Buffer.alloc(0);
let newlineScratch = new Int32Array(4096);

/** Encodes one stream's bytes into CRI log entries, chunk by chunk; keeps an unfinished line for the next chunk. */
export class CriLineEncoder {
  readonly #max: number;
  readonly #header: Buffer;
  /** the unfinished line: at most max bytes, plus a "\r" that may yet turn out to end it (allocated when first needed) */
  #pending: Buffer = NO_PENDING;
  #pendingLength = 0;

  constructor(stream: "stdout" | "stderr", maxLineSize: number) {
    this.#max = maxLineSize > 0 ? maxLineSize : UNLIMITED_LINE;
    this.#header = Buffer.from(`${"0".repeat(30)} ${stream} F `, "latin1");
  }

  /** Bytes of an unfinished line held for the next chunk. */
  get pending(): number {
    return this.#pendingLength;
  }

  /** The entries `chunk` completes, as one Buffer (empty when it only extends an unfinished line). */
  encode(chunk: Uint8Array, now = Date.now()): Buffer {
    const n = chunk.length;
    if (n === 0) return Buffer.alloc(0);
    tick(now);
    const max = this.#max;
    if (newlineScratch.length < n) newlineScratch = new Int32Array(Math.max(n, newlineScratch.length * 2));
    const newlines = newlineScratch;
    let count = 0;
    for (let i = 0; i < n; i++) if (chunk[i] === NL) newlines[count++] = i;
    const content = this.#pendingLength + n;
    const out = Buffer.allocUnsafe(content + (count + Math.ceil(content / max) + 2) * (HEADER_BYTES + 1));
    let off = 0;
    let start = 0;
    // A held "\r" is content unless this chunk begins the newline it precedes.
    if (this.#pendingLength > max && chunk[0] !== NL) off = this.#emitPending(out, off, TAG_P, max);
    for (let k = 0; k < count; k++) {
      const nl = newlines[k]!;
      let end = nl;
      if (end > start) {
        if (chunk[end - 1] === CR) end--;
      } else if (this.#pendingLength > 0 && this.#pending[this.#pendingLength - 1] === CR) {
        this.#pendingLength--;
      }
      if (this.#pendingLength > 0) {
        // first piece: the unfinished line topped up from this chunk
        const take = Math.min(end - start, max - this.#pendingLength);
        const whole = this.#pendingLength + (end - start) <= max;
        off = this.#entry(out, off, whole ? TAG_F : TAG_P, chunk, start, start + take);
        start += take;
        if (whole) {
          start = nl + 1;
          continue;
        }
      }
      while (end - start > max) {
        off = this.#entry(out, off, TAG_P, chunk, start, start + max);
        start += max;
      }
      off = this.#entry(out, off, TAG_F, chunk, start, end);
      start = nl + 1;
    }
    // The tail has no newline yet: full pieces go out as P once more is known to follow.
    for (;;) {
      const tail = n - start;
      const total = this.#pendingLength + tail;
      const last = tail > 0 ? chunk[n - 1] : this.#pending[this.#pendingLength - 1];
      if (total - (last === CR ? 1 : 0) <= max) break;
      if (this.#pendingLength > 0) {
        const take = max - this.#pendingLength;
        off = this.#entry(out, off, TAG_P, chunk, start, start + take);
        start += take;
      } else {
        off = this.#entry(out, off, TAG_P, chunk, start, start + max);
        start += max;
      }
    }
    if (start < n) {
      if (this.#pending === NO_PENDING) this.#pending = Buffer.allocUnsafe(max + 1);
      this.#pending.set(chunk.subarray(start, n), this.#pendingLength);
      this.#pendingLength += n - start;
    }
    return out.subarray(0, off);
  }

  /** At EOF: the unfinished line as P entries (a "\r" kept, as containerd keeps it), or an empty Buffer. */
  end(now = Date.now()): Buffer {
    if (this.#pendingLength === 0) return Buffer.alloc(0);
    tick(now);
    const out = Buffer.allocUnsafe(this.#pendingLength + 2 * (HEADER_BYTES + 1));
    let off = 0;
    while (this.#pendingLength > 0) off = this.#emitPending(out, off, TAG_P, Math.min(this.#max, this.#pendingLength));
    return out.subarray(0, off);
  }

  /** One entry: the pending bytes (all of them), then chunk[from, to). */
  #entry(out: Buffer, off: number, tag: number, chunk: Uint8Array, from: number, to: number): number {
    off = this.#writeHeader(out, off, tag);
    if (this.#pendingLength > 0) {
      this.#pending.copy(out, off, 0, this.#pendingLength);
      off += this.#pendingLength;
      this.#pendingLength = 0;
    }
    const len = to - from;
    if (len < 32) {
      for (let i = 0; i < len; i++) out[off + i] = chunk[from + i]!;
    } else {
      out.set(chunk.subarray(from, to), off);
    }
    off += len;
    out[off] = NL;
    return off + 1;
  }

  /** An entry of the first `len` pending bytes; the rest move to the front. */
  #emitPending(out: Buffer, off: number, tag: number, len: number): number {
    off = this.#writeHeader(out, off, tag);
    this.#pending.copy(out, off, 0, len);
    off += len;
    out[off] = NL;
    this.#pending.copyWithin(0, len, this.#pendingLength);
    this.#pendingLength -= len;
    return off + 1;
  }

  #writeHeader(out: Buffer, off: number, tag: number): number {
    const h = this.#header;
    const iso = clockIso;
    for (let i = 0; i < 23; i++) out[off + i] = iso[i]!;
    let seq = nextSeq();
    for (let i = 28; i >= 23; i--) {
      out[off + i] = 48 + (seq % 10);
      seq = (seq / 10) | 0;
    }
    out[off + 29] = 0x5a; // Z
    for (let i = 30; i < HEADER_BYTES; i++) out[off + i] = h[i]!;
    out[off + 38] = tag;
    return off + HEADER_BYTES;
  }
}

/** "failed": the output from now on is dropped, until "resumed". */
export type LogFileReport = (what: "failed" | "resumed", err?: Error) => void;

/**
 * The log file: one write() per batch, each resolved once the kernel has it,
 * so whoever awaits it holds no more than that batch. reopen() switches to a
 * new file at the same path between two batches (kubelet renamed the old one).
 */
export class CriLogFile {
  #fd = -1;
  #writing: Promise<void> = Promise.resolve();
  #reopening: Promise<void> = Promise.resolve();
  #closed = false;
  /** the write error in force: batches are dropped (output is still drained, as containerd does) */
  error: Error | undefined;
  #failedAt = 0;

  /**
   * `report` hears when writing fails (once, not per batch) and when it works again.
   * While failing, a write is tried at most once every `retryMs` (a full disk may get room again).
   */
  constructor(readonly path: string, private readonly report: LogFileReport = () => undefined, private readonly retryMs = 1000) {}

  async open(): Promise<void> {
    this.#fd = await this.#openFile();
  }

  async #openFile(): Promise<number> {
    await mkdir(dirname(this.path), { recursive: true });
    const fd = await open(this.path, "a+", 0o640);
    try {
      // A crib SIGKILLed inside a write can leave its last entry cut short (the
      // kernel stops a write at a fatal signal): end that line, so the next entry
      // starts on a line of its own.
      const { size } = await fstat(fd);
      if (size > 0) {
        const last = Buffer.alloc(1);
        await read(fd, last, 0, 1, size - 1);
        if (last[0] !== NL) await this.#writeFully(fd, Buffer.from("\n"));
      }
    } catch (err) {
      await close(fd).catch(() => undefined);
      throw err;
    }
    return fd;
  }

  async #writeFully(fd: number, data: Uint8Array): Promise<void> {
    for (let off = 0; off < data.length;) {
      off += await new Promise<number>((resolve, reject) => writeFd(fd, data, off, data.length - off, null, (err, n) => (err ? reject(err) : resolve(n))));
    }
  }

  /** Appends `data`; resolves when it is written (or the write failed: see `error`). Callers await one batch at a time. */
  write(data: Uint8Array): Promise<void> {
    const p = this.#writing.then(() => this.#writeAll(data));
    this.#writing = p;
    return p;
  }

  async #writeAll(data: Uint8Array): Promise<void> {
    if (this.#fd < 0) return;
    if (this.error !== undefined && Date.now() - this.#failedAt < this.retryMs) return; // dropped
    try {
      await this.#writeFully(this.#fd, data);
      if (this.error !== undefined) {
        this.error = undefined;
        this.report("resumed");
      }
    } catch (err) {
      this.#failedAt = Date.now();
      if (this.error === undefined) {
        this.error = err instanceof Error ? err : new Error(String(err));
        this.report("failed", this.error);
      }
    }
  }

  /** After kubelet rotated the file: the next batch goes to a new file at the same path. */
  reopen(): Promise<void> {
    const next = this.#reopening.then(async () => {
      if (this.#closed) return;
      const fd = await this.#openFile();
      // swap between two writes, so each batch lands whole in one file
      const swapped = this.#writing.then(() => {
        const old = this.#fd;
        this.#fd = fd;
        this.error = undefined;
        return old;
      });
      this.#writing = swapped.then(() => undefined);
      const old = await swapped;
      if (old >= 0) await close(old).catch(() => undefined);
    });
    this.#reopening = next.catch(() => undefined);
    return next;
  }

  /** Waits for the writes in flight and closes the file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#reopening;
    await this.#writing;
    const fd = this.#fd;
    this.#fd = -1;
    if (fd >= 0) await close(fd).catch(() => undefined);
  }
}
