// Importing an OCI image archive (an image layout in a tar, as deploy/setup.sh
// builds crib's pause) into containerd: `ctr images import`, which writes the
// blobs, creates the image record named by the index's annotation and unpacks
// it into the overlayfs snapshotter. ctr ships with containerd, so it is there
// wherever containerd is; an in-process import can replace it once crib's own
// ingest and unpack are the only writers of images.
import { execFile } from "node:child_process";
import { createReadStream } from "node:fs";
import { access } from "node:fs/promises";
import { promisify } from "node:util";
import { SNAPSHOTTER } from "../containerd/tasks.js";

const run = promisify(execFile);

export interface ImportArchiveOptions {
  /** containerd's socket */
  address: string;
  namespace: string;
  archive: string;
  /** the ctr binary; default "ctr" from PATH */
  ctr?: string;
  signal?: AbortSignal;
}

export class ArchiveImportError extends Error {
  constructor(readonly archive: string, detail: string, options?: ErrorOptions) {
    super(`cannot import image archive ${archive}: ${detail}`, options);
    this.name = "ArchiveImportError";
  }
}

export const archiveExists = (path: string): Promise<boolean> =>
  path === "" ? Promise.resolve(false) : access(path).then(() => true, () => false);

export async function importArchive(o: ImportArchiveOptions): Promise<void> {
  const args = ["-a", o.address, "-n", o.namespace, "images", "import", "--snapshotter", SNAPSHOTTER, o.archive];
  try {
    await run(o.ctr ?? "ctr", args, { timeout: 120_000, ...(o.signal ? { signal: o.signal } : {}) });
  } catch (err) {
    if (o.signal?.aborted) throw o.signal.reason;
    const e = err as { code?: unknown; stderr?: string; message: string };
    const detail = e.code === "ENOENT" ? `${o.ctr ?? "ctr"} not found in PATH (it comes with containerd)` : (e.stderr?.trim() || e.message);
    throw new ArchiveImportError(o.archive, detail, { cause: err });
  }
}

const IMAGE_NAME = "io.containerd.image.name";
const REF_NAME = "org.opencontainers.image.ref.name";

/** The image names an archive's index.json gives its manifests (what `ctr images import` names them). */
export async function archiveImageNames(archive: string): Promise<string[]> {
  // loaded on first use: the daemon reads an archive only when the sandbox image is missing
  const { extract } = await import("tar-stream");
  const tar = extract();
  createReadStream(archive).on("error", (err) => tar.destroy(err)).pipe(tar);
  let index: string | undefined;
  for await (const entry of tar) {
    const name = entry.header.name.replace(/^\.\//, "");
    if (name === "index.json") {
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      index = Buffer.concat(chunks).toString("utf8");
    } else {
      entry.resume();
    }
  }
  if (index === undefined) throw new ArchiveImportError(archive, "no index.json: not an OCI image layout");
  const manifests = (JSON.parse(index) as { manifests?: Array<{ annotations?: Record<string, string> }> }).manifests ?? [];
  return manifests
    .map((m) => m.annotations?.[IMAGE_NAME] ?? m.annotations?.[REF_NAME] ?? "")
    .filter((n) => /[/:@]/.test(n));
}
