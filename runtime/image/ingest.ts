// Blobs into containerd's content store. One Content.Write session per blob:
// STAT finds a partial ingest left by an earlier attempt, the download resumes
// at its offset, and COMMIT names the expected digest and size so containerd
// checks the whole blob, including bytes an earlier attempt wrote.
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import type { Containerd, Leased } from "../containerd/client.js";
import { ContainerdError, isAlreadyExists, isNotFound, isUnavailable } from "../containerd/errors.js";
import { WriteSession } from "./content-write.js";
import { DigestMismatchError, TransferError } from "./errors.js";
import { isIndexType, isManifestType, MediaType, type Descriptor } from "./oci.js";

/** Bytes of a blob from `offset` on, erroring (not ending) when they are wrong or cut off. */
export type BlobSource = (offset: number, signal: AbortSignal) => Promise<AsyncIterable<Buffer> | Iterable<Buffer>>;

export interface WriteBlobOptions {
  containerd: Containerd;
  leased: Leased;
  /** the lease the pull runs under: content already present joins it */
  lease: string;
  descriptor: Descriptor;
  /** content labels (GC references, distribution source); set on commit, or on the existing blob */
  labels: Record<string, string>;
  source: BlobSource;
  signal: AbortSignal;
  log: Logger;
  /** resumes after a broken transfer that made progress; default 3 */
  resumes?: number;
}

const LOCK_WAIT_MS = 100;

/** containerd's ingest key for a descriptor (remotes.MakeRefKey), shared with ctr's pulls. */
export function ingestRef(d: Pick<Descriptor, "mediaType" | "digest">): string {
  const t = d.mediaType;
  if (isManifestType(t)) return `manifest-${d.digest}`;
  if (isIndexType(t)) return `index-${d.digest}`;
  if (isLayerType(t)) return `layer-${d.digest}`;
  if (t === MediaType.OciConfig || t === MediaType.DockerConfig) return `config-${d.digest}`;
  return `unknown-${d.digest}`;
}

export const isLayerType = (mediaType: string): boolean =>
  mediaType.startsWith("application/vnd.oci.image.layer.") || mediaType.startsWith("application/vnd.docker.image.rootfs.");

/** The content's labels, or undefined when the store does not have it. */
export async function contentLabels(c: Pick<Leased, "content">, digest: string, signal?: AbortSignal): Promise<Record<string, string> | undefined> {
  try {
    const { info } = await c.content.Info({ digest }, signal);
    return info?.labels ?? {};
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** Sets `labels` on existing content, touching only those keys. */
export async function updateLabels(c: Pick<Leased, "content">, digest: string, labels: Record<string, string>, have: Record<string, string> = {}, signal?: AbortSignal): Promise<void> {
  const changed = Object.keys(labels).filter((k) => have[k] !== labels[k]);
  if (changed.length === 0) return;
  await c.content.Update({ info: { digest, labels }, update_mask: { paths: changed.map((k) => `labels.${k}`) } }, signal);
}

const isLocked = (err: unknown): boolean => isUnavailable(err) && /locked/.test((err as Error).message);
const isCommitMismatch = (err: unknown): boolean =>
  err instanceof ContainerdError && /unexpected commit (digest|size)/.test(err.message);

/**
 * Makes sure the store has the blob: present already (labels brought up to
 * date), or downloaded into an ingest and committed. Returns whether it wrote.
 */
export async function writeBlob(o: WriteBlobOptions): Promise<"present" | "written"> {
  const { descriptor: d, signal } = o;
  const have = await contentLabels(o.leased, d.digest, signal);
  if (have !== undefined) {
    await o.containerd.leases.AddResource({ id: o.lease, resource: { id: d.digest, type: "content" } }, signal);
    await updateLabels(o.leased, d.digest, o.labels, have, signal);
    return "present";
  }
  const ref = ingestRef(d);
  const began = Date.now();
  let resumes = o.resumes ?? 3;
  let restartedFromZero = false;
  for (;;) {
    signal.throwIfAborted();
    const session = new WriteSession(o.containerd, o.leased, ref, signal);
    let start = 0;
    try {
      const stat = await session.request({ action: "STAT", ref, total: d.size, expected: d.digest });
      start = Number(stat.offset);
      // A stale ingest of another size, or one we must not trust: write from 0 (containerd truncates).
      if ((Number(stat.total) !== 0 && Number(stat.total) !== d.size) || start > d.size || restartedFromZero) start = 0;
      if (start > 0) o.log.debug({ digest: d.digest, offset: start, size: d.size }, "resuming a partial download");
      session.seek(start, d.size);
      const bytes = await o.source(start, signal);
      try {
        for await (const chunk of bytes) await session.write(chunk);
      } catch (err) {
        // What arrived before the connection broke, or the caller gave up, is kept for the next attempt.
        if (err instanceof TransferError || signal.aborted) await session.flush(true).catch(() => undefined);
        throw err;
      }
      await session.flush();
      await session.request({ action: "COMMIT", offset: session.position, total: d.size, expected: d.digest, labels: o.labels });
      await session.close();
      o.log.debug({ digest: d.digest, size: d.size, from: start, ms: Date.now() - began }, "blob written");
      return "written";
    } catch (err) {
      await session.close();
      if (signal.aborted) throw signal.reason;
      if (isAlreadyExists(err)) {
        // another writer committed it meanwhile
        await updateLabels(o.leased, d.digest, o.labels, (await contentLabels(o.leased, d.digest, signal)) ?? {}, signal);
        return "present";
      }
      if (isLocked(err)) {
        await sleep(LOCK_WAIT_MS, undefined, { signal });
        continue;
      }
      if (err instanceof DigestMismatchError || isCommitMismatch(err)) {
        await abortIngest(o.leased, ref);
        if (isCommitMismatch(err) && start > 0 && !restartedFromZero) {
          // the earlier attempt's bytes were wrong: once more from the start
          restartedFromZero = true;
          continue;
        }
        if (err instanceof DigestMismatchError) throw err;
        throw new DigestMismatchError(`blob ${d.digest}: ${(err as Error).message}`, { cause: err });
      }
      if (err instanceof TransferError && session.position > start && resumes > 0) {
        resumes--;
        o.log.info({ digest: d.digest, offset: session.position, size: d.size, err: err.message }, "download broke off; resuming");
        continue;
      }
      throw err;
    }
  }
}

async function abortIngest(c: Pick<Leased, "content">, ref: string): Promise<void> {
  await c.content.Abort({ ref }, AbortSignal.timeout(30_000)).catch((err: unknown) => {
    if (!isNotFound(err)) throw err;
  });
}
