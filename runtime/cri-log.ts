// Writes a container's output in the CRI log format kubelet reads:
//   <RFC3339Nano timestamp> <stdout|stderr> <P|F> <content>
// F ends a line; a line longer than the max size is split into P pieces.
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import type { Readable } from "node:stream";

const NL = 0x0a;

let lastMs = 0;
let seq = 0;
/** RFC3339 with 9 fraction digits; sub-millisecond digits keep lines ordered. */
export function timestamp(now = Date.now()): string {
  seq = now === lastMs ? seq + 1 : 0;
  lastMs = now;
  const iso = new Date(now).toISOString(); // 2024-01-02T03:04:05.678Z
  return `${iso.slice(0, 23)}${String(Math.min(seq, 999_999)).padStart(6, "0")}Z`;
}

export class CriLogWriter {
  #out: WriteStream | undefined;
  #closed = false;

  constructor(readonly path: string, readonly maxLineSize: number) {}

  async open(): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true });
    this.#out = createWriteStream(this.path, { flags: "a", mode: 0o640 });
    await new Promise<void>((resolve, reject) => {
      this.#out!.once("open", () => resolve());
      this.#out!.once("error", reject);
    });
    this.#out.on("error", () => undefined);
  }

  /** After kubelet rotated the file: finish the old one, continue in a new one at the same path. */
  async reopen(): Promise<void> {
    const old = this.#out;
    await this.open();
    if (old) await new Promise<void>((r) => old.end(r));
  }

  #write(stream: "stdout" | "stderr", tag: "P" | "F", content: Buffer): void {
    if (this.#closed || !this.#out) return;
    this.#out.write(Buffer.concat([Buffer.from(`${timestamp()} ${stream} ${tag} `), content, Buffer.from("\n")]));
  }

  /** Copies `source` into the log until it ends; resolves when everything read is written. */
  follow(source: Readable, stream: "stdout" | "stderr"): Promise<void> {
    let pending: Buffer = Buffer.alloc(0);
    return new Promise<void>((resolve) => {
      source.on("data", (chunk: Buffer) => {
        let buf = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
        let nl: number;
        while ((nl = buf.indexOf(NL)) !== -1) {
          let line = buf.subarray(0, nl);
          while (line.length > this.maxLineSize) {
            this.#write(stream, "P", line.subarray(0, this.maxLineSize));
            line = line.subarray(this.maxLineSize);
          }
          this.#write(stream, "F", line);
          buf = buf.subarray(nl + 1);
        }
        while (buf.length >= this.maxLineSize) {
          this.#write(stream, "P", buf.subarray(0, this.maxLineSize));
          buf = buf.subarray(this.maxLineSize);
        }
        pending = Buffer.from(buf);
      });
      const done = () => {
        if (pending.length > 0) this.#write(stream, "P", pending);
        pending = Buffer.alloc(0);
        resolve();
      };
      source.once("end", done);
      source.once("close", done);
      source.once("error", done);
    });
  }

  /** Flushes and closes the file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const out = this.#out;
    if (out) await new Promise<void>((r) => out.end(r));
  }
}
