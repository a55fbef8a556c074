// Replaces a file atomically: write a uniquely named temporary file in the same
// directory, optionally fsync it, rename it over the target. A crash leaves the
// old or the new content, and concurrent writers never share a temporary file.
import { randomBytes } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { countCall } from "./call-trace.js";

export interface AtomicWriteOptions {
  mode?: number;
  /** fsync before the rename, for records that must survive a power loss */
  sync?: boolean;
}

export async function writeFileAtomic(path: string, data: string | Uint8Array, opts: AtomicWriteOptions = {}): Promise<void> {
  // a dot-name, so directory watchers (the CNI loader) skip it while it is incomplete
  const counted = countCall(opts.sync ? "file write+fsync" : "file write");
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    const file = await open(tmp, "w", opts.mode ?? 0o644);
    try {
      await file.writeFile(data);
      if (opts.sync) await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, path);
    counted();
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
