// Layers into overlayfs snapshots, as containerd's own unpacker does it: a
// snapshot per layer named by its chain ID, made by preparing an
// `extract-<unique> <chainID>` snapshot on the parent chain, applying the
// layer with the Diff service (gzip, zstd or plain tar), checking the applied
// digest against the config's diff ID, and committing it under the chain ID.
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { Leased } from "../containerd/client.js";
import { isAlreadyExists, isNotFound } from "../containerd/errors.js";
import { SNAPSHOTTER } from "../containerd/tasks.js";
import { DigestMismatchError } from "./errors.js";
import { updateLabels } from "./ingest.js";
import type { Descriptor } from "./oci.js";
import { chainId } from "./store.js";

export const SNAPSHOT_REF_LABEL = "containerd.io/snapshot.ref";
export const UNCOMPRESSED_LABEL = "containerd.io/uncompressed";
export const SNAPSHOT_GC_LABEL = `containerd.io/gc.ref.snapshot.${SNAPSHOTTER}`;
const INHERITED_PREFIX = "containerd.io/snapshot/";

export interface UnpackOptions {
  leased: Leased;
  /** names the image in errors */
  image: string;
  layers: readonly Descriptor[];
  diffIds: readonly string[];
  /** the downloads of the layers from index `from` on (begun by then, or begun now): one promise per layer from there */
  fetch(from: number): Array<Promise<unknown>>;
  /** registers an undo step, run (under a fresh timeout) when the pull fails */
  undo(what: string, step: (signal: AbortSignal) => Promise<unknown>): void;
  signal: AbortSignal;
  log: Logger;
}

const uniquePart = (): string => `${process.hrtime.bigint() % 1_000_000_000n}-${randomBytes(3).toString("base64url")}`;

async function snapshotExists(leased: Leased, key: string, signal: AbortSignal): Promise<boolean> {
  try {
    await leased.snapshots.Stat({ snapshotter: SNAPSHOTTER, key }, signal);
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

/** Unpacks every layer not unpacked yet; returns the chain ID of the top layer. */
export async function unpack(o: UnpackOptions): Promise<string> {
  const { leased, layers, diffIds, signal } = o;
  if (layers.length !== diffIds.length) {
    throw new DigestMismatchError(`${o.image}: the manifest has ${layers.length} layers, the config ${diffIds.length} diff IDs`);
  }
  let downloads: Array<Promise<unknown>> | undefined;
  let offset = 0;
  let failed: Promise<never> | undefined;

  const chains = diffIds.map((_, i) => chainId(diffIds.slice(0, i + 1)));
  // which layers are unpacked already: asked of all at once, not one round trip after another
  const present = await Promise.all(chains.map((chain) => snapshotExists(leased, chain, signal)));
  for (const [i, layer] of layers.entries()) {
    const parent = i === 0 ? "" : chains[i - 1]!;
    const chain = chains[i]!;
    if (present[i]) continue;

    if (downloads === undefined) {
      downloads = o.fetch(i);
      offset = i;
      const all = downloads;
      failed = new Promise<never>((_, reject) => all.forEach((p) => p.catch(reject)));
      failed.catch(() => undefined);
    }
    const download = Promise.race([downloads[i - offset], failed]);
    download.catch(() => undefined);

    const labels: Record<string, string> = { [SNAPSHOT_REF_LABEL]: chain };
    for (const [k, v] of Object.entries(layer.annotations ?? {})) if (k.startsWith(INHERITED_PREFIX)) labels[k] = v;

    let key = "";
    let mounts;
    for (let attempt = 1; ; attempt++) {
      key = `extract-${uniquePart()} ${chain}`;
      try {
        ({ mounts } = await leased.snapshots.Prepare({ snapshotter: SNAPSHOTTER, key, parent, labels }, signal));
        break;
      } catch (err) {
        if (!isAlreadyExists(err) || attempt >= 3) throw err;
      }
    }
    if (mounts === undefined) throw new Error(`${o.image}: containerd prepared snapshot "${key}" without mounts`);
    const extract = key;
    const remove = (s: AbortSignal) => leased.snapshots.Remove({ snapshotter: SNAPSHOTTER, key: extract }, s).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
    try {
      // the extraction snapshot was prepared while the layer was still downloading
      await download;
      const { applied } = await leased.diff.Apply({
        diff: { media_type: layer.mediaType, digest: layer.digest, size: layer.size, annotations: layer.annotations ?? {} },
        mounts,
      }, signal);
      if (applied?.digest !== diffIds[i]) {
        throw new DigestMismatchError(
          `${o.image}: layer ${layer.digest} unpacks to content with digest ${applied?.digest ?? "(none)"}, but the image config names diff ID ${diffIds[i]}`,
        );
      }
      try {
        await leased.snapshots.Commit({ snapshotter: SNAPSHOTTER, name: chain, key: extract, labels }, signal);
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        await remove(AbortSignal.timeout(30_000));
        continue;
      }
    } catch (err) {
      await remove(AbortSignal.timeout(30_000)).catch((e: unknown) => o.log.warn({ key: extract, err: (e as Error).message }, "cannot remove an extraction snapshot"));
      throw err;
    }
    o.undo(`remove snapshot ${chain}`, (s) => leased.snapshots.Remove({ snapshotter: SNAPSHOTTER, key: chain }, s));
    await updateLabels(leased, layer.digest, { [UNCOMPRESSED_LABEL]: diffIds[i]! }, {}, signal);
    o.log.debug({ layer: layer.digest, chain }, "layer unpacked");
  }
  return chainId(diffIds);
}
