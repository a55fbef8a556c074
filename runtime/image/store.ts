// Images as crib sees them in containerd: an image record per reference
// (name:tag and name@digest), its manifest and config in the content store,
// its layers unpacked into overlayfs snapshots keyed by chain ID.
import { createHash } from "node:crypto";
import type { Containerd } from "../containerd/client.js";
import { isNotFound } from "../containerd/errors.js";
import { countCall } from "../call-trace.js";
import { isIndexType, type ImageConfig, type ImageIndex, type ImageManifest } from "./oci.js";
import { selectPlatformManifest, hostPlatform } from "./platform.js";
import { parseReference, referenceString, withDigest, type Reference } from "./reference.js";

export interface StoredImage {
  /** config digest */
  id: string;
  /** containerd image record names that point at it */
  names: string[];
  repoTags: string[];
  repoDigests: string[];
  manifestDigest: string;
  chainId: string;
  config: ImageConfig;
  /** compressed size of the layers plus manifest and config */
  size: number;
  pinned: boolean;
}

export const PINNED_LABEL = "crib.pinned";

/** A reference as an image record names it: normalised, `:latest` added, the tag dropped when a digest is given. */
export function normalizeReference(input: string): Reference {
  const ref = parseReference(input);
  return ref.digest === undefined ? ref : withDigest(ref, ref.digest);
}

/** chainID(L0) = diffID(L0); chainID(Ln) = sha256(chainID(Ln-1) + " " + diffID(Ln)) */
export function chainId(diffIds: readonly string[]): string {
  let chain = "";
  for (const diff of diffIds) {
    chain = chain === "" ? diff : `sha256:${createHash("sha256").update(`${chain} ${diff}`).digest("hex")}`;
  }
  return chain;
}

export async function readContent(c: Containerd, digest: string, signal?: AbortSignal): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const counted = countCall("containerd content.Read");
  const stream = c.raw.content.Read({ digest, offset: 0, size: 0 }, c.metadata());
  const abort = () => stream.cancel();
  signal?.addEventListener("abort", abort, { once: true });
  try {
    for await (const msg of stream as AsyncIterable<{ data: Buffer }>) chunks.push(msg.data);
  } catch (err) {
    throw err instanceof Error && "code" in err ? new Error(`containerd content ${digest}: ${(err as { details?: string }).details ?? err.message}`) : err;
  } finally {
    signal?.removeEventListener("abort", abort);
    counted();
  }
  return Buffer.concat(chunks);
}

const readJson = async <T>(c: Containerd, digest: string, signal?: AbortSignal): Promise<T> =>
  JSON.parse((await readContent(c, digest, signal)).toString("utf8")) as T;

/** Resolves an image record's target (index or manifest) to this host's manifest. */
export async function manifestFor(c: Containerd, target: { media_type: string; digest: string }, signal?: AbortSignal): Promise<{ digest: string; manifest: ImageManifest }> {
  if (isIndexType(target.media_type)) {
    const index = await readJson<ImageIndex>(c, target.digest, signal);
    const chosen = selectPlatformManifest(index.manifests, hostPlatform());
    if (!chosen) throw new Error(`image index ${target.digest} has no manifest for ${process.arch}`);
    return manifestFor(c, { media_type: chosen.mediaType, digest: chosen.digest }, signal);
  }
  return { digest: target.digest, manifest: await readJson<ImageManifest>(c, target.digest, signal) };
}

const isDigestName = (name: string) => name.includes("@sha256:");

/** Reads every image record and groups them by image ID. */
export async function listImages(c: Containerd, signal?: AbortSignal): Promise<StoredImage[]> {
  const { images } = await c.images.List({ filters: [] }, signal);
  const byId = new Map<string, StoredImage>();
  const listed = new Set<string>();
  for (const record of images) {
    if (!record.target) continue;
    listed.add(record.target.digest);
    let info;
    try {
      info = await describe(c, record.target, signal);
    } catch {
      continue; // content missing (being pulled or garbage): not an image yet
    }
    const entry = byId.get(info.id) ?? { ...info, names: [], repoTags: [], repoDigests: [], pinned: false };
    entry.names.push(record.name);
    if (record.labels[PINNED_LABEL] === "pinned") entry.pinned = true;
    if (isDigestName(record.name)) entry.repoDigests.push(record.name);
    else if (!record.name.startsWith("sha256:")) entry.repoTags.push(record.name);
    byId.set(info.id, entry);
  }
  // the cache holds what the last full listing named, no more: a removed image's manifest and config go with it
  for (const digest of described.keys()) if (!listed.has(digest)) described.delete(digest);
  return [...byId.values()];
}

/** Manifest and config facts by image record target digest (content is immutable, so they never go stale). */
const described = new Map<string, Omit<StoredImage, "names" | "repoTags" | "repoDigests" | "pinned">>();

/** How many targets' manifest and config are kept (for tests). */
export const describedTargets = (): number => described.size;

async function describe(c: Containerd, target: { media_type: string; digest: string; size: string }, signal?: AbortSignal) {
  const hit = described.get(target.digest);
  if (hit) return hit;
  const { digest, manifest } = await manifestFor(c, target, signal);
  const config = await readJson<ImageConfig>(c, manifest.config.digest, signal);
  const size = manifest.layers.reduce((n, l) => n + l.size, 0) + manifest.config.size;
  const info = { id: manifest.config.digest, manifestDigest: digest, chainId: chainId(config.rootfs.diff_ids), config, size };
  described.set(target.digest, info);
  return info;
}

/**
 * By reference (normalised), image ID, digest reference, or (as containerd's
 * CRI plugin resolves them) a unique prefix of an image ID; undefined when absent.
 */
export async function findImage(c: Containerd, ref: string, signal?: AbortSignal): Promise<StoredImage | undefined> {
  return findAmong(await listImages(c, signal), ref);
}

/** findImage's rules over images already listed. */
export function findAmong(all: readonly StoredImage[], ref: string): StoredImage | undefined {
  const hex = /^(?:sha256:)?([0-9a-f]{1,64})$/.exec(ref)?.[1];
  const byId = hex?.length === 64 ? all.find((i) => i.id === `sha256:${hex}`) : undefined;
  if (byId) return byId;
  try {
    const name = referenceString(normalizeReference(ref));
    const byName = all.find((i) => i.names.includes(name));
    if (byName) return byName;
  } catch {
    // not a reference: perhaps an ID
  }
  if (hex === undefined) return undefined;
  const byPrefix = all.filter((i) => i.id.startsWith(`sha256:${hex}`));
  return byPrefix.length === 1 ? byPrefix[0] : undefined;
}

export async function getRecord(c: Containerd, name: string, signal?: AbortSignal) {
  try {
    return (await c.images.Get({ name }, signal)).image ?? undefined;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}
