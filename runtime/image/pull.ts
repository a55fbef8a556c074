// Pulling an image into containerd: resolve the reference with the registry
// client, stream its manifests, config and layers into the content store
// under a lease, unpack the layers into snapshots, and record the image as
// `name:tag` and `name@digest`, as containerd's CRI plugin does. Concurrent
// pulls of one reference share the work, which stops only when every caller
// has given up. A failed pull leaves no image record and no snapshot; what it
// downloaded stays for the next attempt in a lease of its own that expires
// after `failedPullKeepMs` (10 min in crib's config), and crib deletes expired
// and surplus ones itself (sweep): a lease with nothing in it goes at once.
import { createHash, randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { Containerd, Leased } from "../containerd/client.js";
import { isAlreadyExists, isNotFound } from "../containerd/errors.js";
import type { Image__Input } from "../../proto/gen/containerd/containerd/services/images/v1/Image.js";
import type { AuthConfig } from "./hosts.js";
import { contentLabels, updateLabels, writeBlob, type BlobSource } from "./ingest.js";
import { UnsupportedManifestError } from "./errors.js";
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest } from "./oci.js";
import { referenceString, withDigest, type Reference } from "./reference.js";
import type { RegistryClient } from "./registry.js";
import { loginKey, loginOf } from "./registry-auth.js";
import { chainId, normalizeReference, PINNED_LABEL, readContent } from "./store.js";
import { SNAPSHOT_GC_LABEL, unpack } from "./unpack.js";
import { counted } from "../call-trace.js";

export interface ImagePullerOptions {
  containerd: Containerd;
  /** owned by the puller: close() closes it */
  registry: RegistryClient;
  /** layers of one image downloaded at once */
  maxConcurrentDownloads: number;
  /** the pod sandbox image: its records are labelled pinned */
  sandboxImage: string;
  log: Logger;
  /** told of the bytes of each blob written to the content store (for metrics) */
  onDownloaded?: (bytes: number) => void;
  /** times a broken or stalled blob download resumes; default 3 */
  maxResumes?: number;
  /** how long a failed pull's data is kept for the next attempt; 0 deletes it at once; default 10 min */
  failedPullKeepMs?: number;
}

export interface PullOptions {
  /** the request's credentials (the CRI's AuthConfig) */
  auth?: AuthConfig | undefined;
  signal?: AbortSignal | undefined;
}

export interface PulledImage {
  /** the image ID: the digest of its config */
  id: string;
  /** the image records made or updated: name:tag and name@digest */
  names: string[];
  /** what the records point at: the index, or the manifest */
  target: Descriptor;
  /** chain ID of the top layer */
  chainId: string;
}

/** Leases of pulls carry this label: a hash of the reference, so a later pull adopts what a failed one left. */
export const PULL_LEASE_LABEL = "crib.pull";
const EXPIRE_LABEL = "containerd.io/gc.expire";
// long enough for any pull under way; a failed pull's data moves to a short-lived lease
const LEASE_LIFETIME_MS = 24 * 3600_000;
const UNDO_TIMEOUT_MS = 60_000;
/** failed pulls whose data is kept at once, at most; the oldest go first */
export const MAX_KEPT_FAILED_PULLS = 8;
const SWEEP_INTERVAL_MS = 60_000;

interface Flight {
  controller: AbortController;
  waiters: number;
  promise: Promise<PulledImage>;
}

export const gcContentLabels = {
  index: (index: ImageIndex): Record<string, string> =>
    Object.fromEntries(index.manifests.map((m, i) => [`containerd.io/gc.ref.content.m.${i}`, m.digest])),
  manifest: (manifest: ImageManifest): Record<string, string> => ({
    "containerd.io/gc.ref.content.config": manifest.config.digest,
    ...Object.fromEntries(manifest.layers.map((l, i) => [`containerd.io/gc.ref.content.l.${i}`, l.digest])),
  }),
};

const bytesSource = (bytes: Buffer): BlobSource => async (offset) => [bytes.subarray(offset)];

/** Waits for every one; then throws the first failure, if any (nothing is left running behind an error). */
async function settleAll(work: Array<Promise<unknown>>): Promise<void> {
  const failed = (await Promise.allSettled(work)).find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}

/** At most `n` of the functions given to it run at once. */
function limiter(n: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let running = 0;
  const queue: Array<() => void> = [];
  return async (fn) => {
    if (running >= n) await new Promise<void>((resolve) => queue.push(resolve));
    running++;
    try {
      return await fn();
    } finally {
      running--;
      queue.shift()?.();
    }
  };
}

export class ImagePuller {
  readonly #c: Containerd;
  readonly #registry: RegistryClient;
  readonly #maxDownloads: number;
  readonly #sandboxImage: string | undefined;
  readonly #log: Logger;
  readonly #onDownloaded: ((bytes: number) => void) | undefined;
  readonly #flights = new Map<string, Flight>();
  /** leases of pulls under way in this process: never adopted */
  readonly #activeLeases = new Set<string>();
  readonly #maxResumes: number;
  readonly #keepMs: number;
  readonly #sweeper: NodeJS.Timeout;

  constructor(o: ImagePullerOptions) {
    this.#c = o.containerd;
    this.#maxResumes = o.maxResumes ?? 3;
    this.#keepMs = o.failedPullKeepMs ?? 600_000;
    this.#sweeper = setInterval(() => void this.sweep().catch(() => undefined), SWEEP_INTERVAL_MS);
    this.#sweeper.unref();
    this.#registry = o.registry;
    this.#maxDownloads = Math.max(1, o.maxConcurrentDownloads);
    this.#log = o.log;
    this.#onDownloaded = o.onDownloaded;
    try {
      this.#sandboxImage = referenceString(normalizeReference(o.sandboxImage));
    } catch {
      this.#sandboxImage = undefined;
    }
  }

  /** Pulls `reference` (joining a pull of it already under way); throws invalid-argument for a bad reference. */
  pull(reference: string, options: PullOptions = {}): Promise<PulledImage> {
    const ref = normalizeReference(reference);
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const key = `${referenceString(ref)}\n${loginKey(loginOf(options.auth))}`;
    let flight = this.#flights.get(key);
    if (flight === undefined) {
      const controller = new AbortController();
      const started = this.#pull(ref, options.auth, controller.signal);
      const f: Flight = { controller, waiters: 0, promise: started };
      started.then(
        () => this.#land(key, f),
        () => {
          this.#land(key, f);
          void this.sweep().catch((err: unknown) => this.#log.warn({ err: (err as Error).message }, "sweeping the leases of failed pulls"));
        },
      );
      this.#flights.set(key, f);
      flight = f;
    }
    return this.#join(key, flight, signal);
  }

  /** Stops the pulls under way and closes the registry client (the puller owns it). */
  close(): void {
    clearInterval(this.#sweeper);
    for (const flight of this.#flights.values()) flight.controller.abort(new DOMException("crib is shutting down", "AbortError"));
    this.#flights.clear();
    this.#registry.close();
  }

  #land(key: string, flight: Flight): void {
    if (this.#flights.get(key) === flight) this.#flights.delete(key);
  }

  #join(key: string, flight: Flight, signal: AbortSignal | undefined): Promise<PulledImage> {
    flight.waiters++;
    return new Promise((resolve, reject) => {
      let done = false;
      const leave = (): void => {
        if (done) return;
        done = true;
        flight.waiters--;
        reject(signal?.reason);
        if (flight.waiters === 0) {
          // nobody wants it any more: stop, and let the next pull start afresh
          this.#land(key, flight);
          flight.controller.abort(signal?.reason);
        }
      };
      signal?.addEventListener("abort", leave, { once: true });
      const settle = (fn: () => void): void => {
        if (done) return;
        done = true;
        flight.waiters--;
        signal?.removeEventListener("abort", leave);
        fn();
      };
      flight.promise.then(
        (pulled) => settle(() => resolve(pulled)),
        (err: unknown) => settle(() => reject(err)),
      );
    });
  }

  async #pull(ref: Reference, auth: AuthConfig | undefined, signal: AbortSignal): Promise<PulledImage> {
    const c = this.#c;
    const name = referenceString(ref);
    const log = this.#log.child({ image: name });
    const started = Date.now();
    const call = { signal, auth };

    // the lease is made while the registry answers: neither needs the other
    const leasing = counted("pull: lease", this.#lease(name, signal, log)).then((id) => {
      this.#activeLeases.add(id);
      return id;
    });
    leasing.catch(() => undefined);
    let resolved;
    try {
      resolved = await counted("pull: registry resolve", this.#registry.resolve(ref, call));
    } catch (err) {
      // an empty lease would only wait for its expiry
      await leasing.then(async (id) => {
        this.#activeLeases.delete(id);
        await c.leases.Delete({ id, sync: false }, AbortSignal.timeout(UNDO_TIMEOUT_MS));
      }, () => undefined).catch(() => undefined);
      throw err;
    }
    log.debug({ target: resolved.target.digest, host: resolved.host, ms: Date.now() - started }, "resolved");
    const manifest = resolved.manifest.manifest;
    const lease = await leasing;
    const leased = c.leased(lease);
    const undo: Array<{ what: string; step: (s: AbortSignal) => Promise<unknown> }> = [];
    const downloads: Array<Promise<unknown>> = [];
    /** blob writes that run beside the unpack; all settled before the records are made or undone */
    const beside: Array<Promise<unknown>> = [];
    const stopDownloads = new AbortController();
    let written = 0;
    try {
      const blob = (descriptor: Descriptor, labels: Record<string, string>, source: BlobSource, s = signal) =>
        counted(`pull: write blob ${descriptor.mediaType.split(".").pop()}`, writeBlob({ containerd: c, leased, lease, descriptor, labels, source, signal: s, log, resumes: this.#maxResumes })).then((how) => {
          if (how === "written") {
            written += descriptor.size;
            this.#onDownloaded?.(descriptor.size);
          }
          return how;
        });
      const aside = <T>(work: Promise<T>): void => {
        work.catch(() => undefined);
        beside.push(work);
      };

      // index and manifest go into the store while the config and layers come down
      for (const ix of resolved.indexes) aside(blob(ix.descriptor, gcContentLabels.index(ix.index), bytesSource(ix.bytes)));
      aside(blob(resolved.manifest.descriptor, gcContentLabels.manifest(manifest), bytesSource(resolved.manifest.bytes)));

      // the layers come down while the config does, as containerd's fetcher has them (the unpack
      // takes them from here; a layer whose content is in the store already is not fetched)
      const limit = limiter(this.#maxDownloads);
      const downloadSignal = AbortSignal.any([signal, stopDownloads.signal]);
      const layerSource = (layer: Descriptor): BlobSource => (offset, s) =>
        this.#registry.fetchBlob(ref, layer, { offset, signal: s, auth });
      const layerWrites = manifest.layers.map((layer) => limit(() => blob(layer, {}, layerSource(layer), downloadSignal)));
      for (const p of layerWrites) p.catch(() => undefined);
      downloads.push(...layerWrites);

      let configBytes: Buffer;
      const haveConfig = await contentLabels(leased, manifest.config.digest, signal);
      if (haveConfig !== undefined) {
        await c.leases.AddResource({ id: lease, resource: { id: manifest.config.digest, type: "content" } }, signal);
        configBytes = await readContent(c, manifest.config.digest, signal);
      } else {
        configBytes = await counted("pull: registry config", this.#registry.readBlob(ref, manifest.config, call));
      }
      const config = parseConfig(name, manifest.config.digest, configBytes);
      // the config names its top snapshot for the garbage collector: known from the diff IDs before the unpack
      const gcSnapshot = { [SNAPSHOT_GC_LABEL]: chainId(config.rootfs.diff_ids) };
      aside<unknown>(haveConfig !== undefined
        ? updateLabels(leased, manifest.config.digest, gcSnapshot, haveConfig, signal)
        : blob(manifest.config, gcSnapshot, bytesSource(configBytes)));

      let chain: string;
      try {
        chain = await counted("pull: unpack (with layer downloads)", unpack({
          leased,
          image: `image "${name}"`,
          layers: manifest.layers,
          diffIds: config.rootfs.diff_ids,
          fetch: (from) => layerWrites.slice(from),
          undo: (what, step) => undo.push({ what, step }),
          signal,
          log,
        }));
      } finally {
        stopDownloads.abort();
        await Promise.allSettled(downloads);
      }
      await settleAll(beside);
      if (chain !== gcSnapshot[SNAPSHOT_GC_LABEL]) throw new Error(`image "${name}": unpacked to ${chain}, expected ${gcSnapshot[SNAPSHOT_GC_LABEL]}`);

      const names = ref.digest !== undefined ? [name] : [name, referenceString(withDigest(ref, resolved.target.digest))];
      const labels: Record<string, string> = this.#sandboxImage === name ? { [PINNED_LABEL]: "pinned" } : {};
      const target = { media_type: resolved.target.mediaType, digest: resolved.target.digest, size: resolved.target.size, annotations: {} };
      // name:tag and name@digest side by side; each made one gets its undo even when the other fails
      await settleAll(names.map(async (recordName) => {
        const previous = await this.#record(leased, { name: recordName, labels, target }, signal);
        undo.push({
          what: `restore image record ${recordName}`,
          step: (s) => (previous === undefined ? c.images.Delete({ name: recordName, sync: false }, s) : c.images.Update({ image: previous }, s)),
        });
      }));

      undo.length = 0;
      await c.leases.Delete({ id: lease, sync: false }, AbortSignal.timeout(UNDO_TIMEOUT_MS)).catch((err: unknown) =>
        log.warn({ lease, err: (err as Error).message }, "cannot delete the pull's lease; it expires on its own"),
      );
      const ms = Date.now() - started;
      log.info({ id: manifest.config.digest, target: resolved.target.digest, host: resolved.host, downloaded: written, ms }, "image pulled");
      return { id: manifest.config.digest, names, target: resolved.target, chainId: chain };
    } catch (err) {
      stopDownloads.abort();
      await Promise.allSettled([...beside, ...downloads]);
      const s = AbortSignal.timeout(UNDO_TIMEOUT_MS);
      for (const { what, step } of undo.reverse()) {
        try {
          await step(s);
        } catch (e) {
          if (!isNotFound(e)) log.error({ step: what, err: (e as Error).message }, "undoing a failed pull");
        }
      }
      this.#activeLeases.delete(lease);
      const kept = await this.#keepFailed(name, lease, log);
      log.warn({ err: (err as Error).message, lease: kept ?? "released" }, kept ? `pull failed; what it downloaded is kept for ${Math.round(this.#keepMs / 1000)} s` : "pull failed; its lease is released");
      throw err;
    } finally {
      this.#activeLeases.delete(lease);
    }
  }

  // The failed pull's data moves to a lease that expires soon (containerd has no lease update); an empty one just goes.
  async #keepFailed(name: string, lease: string, log: Logger): Promise<string | undefined> {
    const c = this.#c;
    const s = AbortSignal.timeout(UNDO_TIMEOUT_MS);
    try {
      const { resources } = await c.leases.ListResources({ id: lease }, s);
      let kept: string | undefined;
      if (this.#keepMs > 0 && resources.length > 0) {
        kept = `crib-pull-${randomBytes(8).toString("hex")}`;
        const expire = new Date(Date.now() + this.#keepMs).toISOString();
        await c.leases.Create({ id: kept, labels: { [EXPIRE_LABEL]: expire, [PULL_LEASE_LABEL]: pullKey(name) } }, s);
        for (const resource of resources) await c.leases.AddResource({ id: kept, resource }, s);
      }
      await c.leases.Delete({ id: lease, sync: false }, s);
      return kept;
    } catch (err) {
      log.warn({ lease, err: (err as Error).message }, "cannot release the failed pull's lease; the sweep retries");
      return lease;
    }
  }

  /**
   * Deletes the leases of failed pulls that have expired, and the oldest
   * beyond MAX_KEPT_FAILED_PULLS; never one of a pull under way. Returns how many went.
   */
  async sweep(signal: AbortSignal = AbortSignal.timeout(UNDO_TIMEOUT_MS)): Promise<number> {
    const c = this.#c;
    const { leases } = await c.leases.List({ filters: [`labels."${PULL_LEASE_LABEL}"`] }, signal);
    const idle = leases
      .filter((l) => !this.#activeLeases.has(l.id))
      .map((l) => ({ id: l.id, expires: Date.parse(l.labels[EXPIRE_LABEL] ?? "") || 0 }))
      .sort((a, b) => b.expires - a.expires);
    const now = Date.now();
    const doomed = idle.filter((l, i) => l.expires <= now || i >= MAX_KEPT_FAILED_PULLS);
    for (const l of doomed) await c.leases.Delete({ id: l.id, sync: false }, signal).catch((err: unknown) => { if (!isNotFound(err)) throw err; });
    if (doomed.length > 0) this.#log.info({ leases: doomed.map((l) => l.id) }, "deleted the leases of failed pulls");
    return doomed.length;
  }

  /** Creates the record, or points the existing one at the new target; returns the record it replaced. */
  async #record(leased: Leased, image: Image__Input & { name: string; labels: Record<string, string> }, signal: AbortSignal): Promise<Image__Input | undefined> {
    try {
      await leased.images.Create({ image }, signal);
      return undefined;
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
    const { image: previous } = await leased.images.Get({ name: image.name }, signal);
    const paths = ["target", ...Object.keys(image.labels).map((k) => `labels.${k}`)];
    await leased.images.Update({ image, update_mask: { paths } }, signal);
    return previous ?? undefined;
  }

  // A lease for one pull, expiring on its own; what failed pulls of the same image left joins it.
  async #lease(name: string, signal: AbortSignal, log: Logger): Promise<string> {
    const c = this.#c;
    const id = `crib-pull-${randomBytes(8).toString("hex")}`;
    const key = pullKey(name);
    const expire = new Date(Date.now() + LEASE_LIFETIME_MS).toISOString();
    await c.leases.Create({ id, labels: { [EXPIRE_LABEL]: expire, [PULL_LEASE_LABEL]: key } }, signal);
    try {
      const { leases } = await c.leases.List({ filters: [`labels."${PULL_LEASE_LABEL}"==${key}`] }, signal);
      for (const old of leases) {
        if (old.id === id || this.#activeLeases.has(old.id)) continue;
        const { resources } = await c.leases.ListResources({ id: old.id }, signal);
        for (const resource of resources) await c.leases.AddResource({ id, resource }, signal);
        await c.leases.Delete({ id: old.id, sync: false }, signal);
        log.debug({ lease: old.id, resources: resources.length }, "adopted what an earlier pull left");
      }
    } catch (err) {
      if (signal.aborted) throw err;
      log.warn({ err: (err as Error).message }, "cannot adopt the leases of earlier pulls");
    }
    return id;
  }
}

const pullKey = (name: string): string => createHash("sha256").update(name).digest("hex").slice(0, 32);

function parseConfig(name: string, digest: string, bytes: Buffer): ImageConfig {
  let config: ImageConfig;
  try {
    config = JSON.parse(bytes.toString("utf8")) as ImageConfig;
  } catch (err) {
    throw new UnsupportedManifestError(`image "${name}": config ${digest} is not valid JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(config.rootfs?.diff_ids)) throw new UnsupportedManifestError(`image "${name}": config ${digest} has no rootfs.diff_ids`);
  return config;
}
