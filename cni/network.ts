// Attaching a sandbox to the network with a plugin chain, as libcni's
// AddNetworkList/DelNetworkList/CheckNetworkList do, with libcni's on-disk
// cache so that DEL after a restart tears down with what ADD used.
import { mkdir, readdir, readFile, rm, statfs } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { compareVersions, findPlugin, type ConfigLoad, type NetworkConfigList } from "./config.js";
import { CniError, CniErrorCode, execPlugin, pluginStdin, type CniCommand } from "./exec.js";
import type { IpRanges } from "./ip.js";
import { writeFileAtomic } from "../runtime/atomic-file.js";
import { parseResult, type NetworkResult } from "./result.js";

export const DEFAULT_IFNAME = "eth0";

/** The pod, for CNI_ARGS (K8S_POD_*). */
export interface PodRef {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
}

export interface PortMapping {
  readonly hostPort: number;
  readonly containerPort: number;
  readonly protocol: "tcp" | "udp" | "sctp";
  readonly hostIP?: string;
}

/** Runtime arguments, passed to the plugins that declare the matching capability. */
export interface CapabilityArgs {
  readonly portMappings?: readonly PortMapping[];
  readonly bandwidth?: { readonly ingressRate?: number; readonly ingressBurst?: number; readonly egressRate?: number; readonly egressBurst?: number };
  readonly ipRanges?: IpRanges;
  readonly dns?: { readonly servers?: readonly string[]; readonly searches?: readonly string[]; readonly options?: readonly string[] };
  readonly [capability: string]: unknown;
}

export interface Attachment {
  /** The sandbox id: CNI_CONTAINERID and the cache key. */
  readonly id: string;
  /** Path of the sandbox's netns. */
  readonly netns: string;
  readonly pod: PodRef;
  /** Defaults to eth0. */
  readonly ifName?: string;
  readonly capabilityArgs?: CapabilityArgs;
}

export interface AddResult extends NetworkResult {
  /** The chain's final result as the last plugin printed it. */
  readonly raw: unknown;
}

/** What is cached per attachment: enough to run DEL without anything else. */
export interface CachedAttachment {
  readonly kind: "cribCniCacheV1";
  readonly containerId: string;
  readonly ifName: string;
  readonly netns: string;
  readonly cniArgs: string;
  readonly capabilityArgs: CapabilityArgs;
  readonly config: NetworkConfigList;
  /** Absent while ADD is running or after it failed. */
  readonly result?: unknown;
}

export interface CniNetworkOptions {
  /** The config to use for ADD and CHECK, e.g. `() => watcher.current()`. */
  readonly config: NetworkConfigList | (() => ConfigLoad);
  readonly binDirs: readonly string[];
  /** Where results are cached, e.g. `<state>/cni-cache`. */
  readonly cacheDir: string;
  readonly log: Logger;
  /** Per plugin invocation; the caller's signal applies as well. Default 2 minutes. */
  readonly pluginTimeoutMs?: number;
  /** The whole ADD chain (a caller's signal may end it sooner). Default 60 s. */
  readonly addTimeoutMs?: number;
  /** The whole DEL chain. Default 30 s. */
  readonly delTimeoutMs?: number;
  /** Told of every ADD, DEL and CHECK of the chain: how long it took and whether it failed (for metrics). */
  readonly observe?: (command: CniCommand, seconds: number, failed: boolean) => void;
}

const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const NSFS_MAGIC = 0x6e736673;

/** CNI_ARGS as kubelet's runtimes pass them. */
export function cniArgs(id: string, pod: PodRef): string {
  const pairs: Array<[string, string]> = [
    ["IgnoreUnknown", "1"],
    ["K8S_POD_NAMESPACE", pod.namespace],
    ["K8S_POD_NAME", pod.name],
    ["K8S_POD_INFRA_CONTAINER_ID", id],
    ["K8S_POD_UID", pod.uid],
  ];
  for (const [key, value] of pairs) {
    if (/[;=]/.test(value)) {
      throw new CniError({ cniCode: CniErrorCode.INVALID_ENVIRONMENT, message: `CNI_ARGS ${key}="${value}" must not contain ";" or "="` });
    }
  }
  return pairs.map(([k, v]) => `${k}=${v}`).join(";");
}

function validIfName(ifName: string): string {
  if (ifName === "" || ifName.length > 15 || /[/\s:]/.test(ifName) || ifName === "." || ifName === "..") {
    throw new CniError({ cniCode: CniErrorCode.INVALID_ENVIRONMENT, message: `interface name "${ifName}" is not a valid Linux interface name` });
  }
  return ifName;
}

// DEL of a netns that is gone gets an empty CNI_NETNS, as containerd does:
// plugins skip the in-netns part then, while a path that is not a netns makes some fail.
async function isNetns(path: string): Promise<boolean> {
  if (path === "") return false;
  try {
    return (await statfs(path)).type === NSFS_MAGIC;
  } catch {
    return false;
  }
}

/** Runs the network config's plugin chain for sandboxes; safe to share across requests. */
export class CniNetwork {
  readonly #config: NetworkConfigList | (() => ConfigLoad);
  readonly #binDirs: readonly string[];
  readonly #cacheDir: string;
  readonly #log: Logger;
  readonly #timeoutMs: number;
  readonly #addTimeoutMs: number;
  readonly #delTimeoutMs: number;
  readonly #observe: CniNetworkOptions["observe"];
  // The spec forbids concurrent operations on one container; queue them per id.
  readonly #queues = new Map<string, Promise<unknown>>();

  constructor(options: CniNetworkOptions) {
    this.#config = options.config;
    this.#binDirs = options.binDirs;
    this.#cacheDir = options.cacheDir;
    this.#log = options.log;
    this.#timeoutMs = options.pluginTimeoutMs ?? 120_000;
    this.#addTimeoutMs = options.addTimeoutMs ?? 60_000;
    this.#delTimeoutMs = options.delTimeoutMs ?? 30_000;
    this.#observe = options.observe;
  }

  /** ADD: runs the chain in order and caches the result. Partial work is undone by del(). */
  add(attachment: Attachment, callerSignal?: AbortSignal): Promise<AddResult> {
    return this.#serialize(attachment.id, "ADD", async () => {
      const signal = this.#deadline("ADD", attachment.id, this.#addTimeoutMs, callerSignal);
      const list = this.#currentConfig();
      const ifName = validIfName(attachment.ifName ?? DEFAULT_IFNAME);
      const args = cniArgs(attachment.id, attachment.pod);
      const capabilityArgs = attachment.capabilityArgs ?? {};
      const record: CachedAttachment = {
        kind: "cribCniCacheV1",
        containerId: attachment.id,
        ifName,
        netns: attachment.netns,
        cniArgs: args,
        capabilityArgs,
        config: list,
      };
      // Cached before ADD too, so that DEL undoing a half-done ADD (also after a
      // restart) runs with the same plugins and port mappings.
      await this.#writeCache(record);
      let result: unknown;
      for (const plugin of list.plugins) {
        const stdin = pluginStdin(list, plugin, { prevResult: result, capabilityArgs });
        const out = await this.#exec("ADD", plugin.type, { ...record, stdin }, signal);
        if (out === undefined) {
          throw new CniError({ cniCode: CniErrorCode.DECODING_FAILURE, plugin: plugin.type, message: "ADD printed no result" });
        }
        result = out;
      }
      const parsed = parseResult(result, ifName);
      await this.#writeCache({ ...record, result });
      this.#log.debug({ id: attachment.id, network: list.name, podIps: parsed.podIps }, "CNI ADD done");
      return { ...parsed, raw: result };
    });
  }

  /**
   * DEL: runs the chain in reverse with the cached config, result and
   * capability args (the current config when nothing is cached), then drops
   * the cache. Idempotent; tolerates a netns that is already gone.
   */
  del(attachment: Attachment, callerSignal?: AbortSignal): Promise<void> {
    return this.#serialize(attachment.id, "DEL", async () => {
      const signal = this.#deadline("DEL", attachment.id, this.#delTimeoutMs, callerSignal);
      const cached = await this.#readCache(attachment.id);
      // ADD caches before it runs a plugin, so with no cache and no config
      // nothing can have been allocated: nothing to undo.
      if (cached === undefined && typeof this.#config === "function" && this.#config().config === undefined) {
        this.#log.debug({ id: attachment.id }, "CNI DEL skipped: nothing cached and no network config");
        return;
      }
      const list = cached?.config ?? this.#currentConfig();
      const ifName = validIfName(cached?.ifName ?? attachment.ifName ?? DEFAULT_IFNAME);
      const capabilityArgs = cached?.capabilityArgs ?? attachment.capabilityArgs ?? {};
      const netnsPath = attachment.netns || cached?.netns || "";
      const netns = (await isNetns(netnsPath)) ? netnsPath : "";
      // Before 0.4.0, DEL got no prevResult.
      const prevResult = compareVersions(list.cniVersion, "0.4.0") >= 0 ? cached?.result : undefined;
      const base = { containerId: attachment.id, ifName, netns, cniArgs: cached?.cniArgs ?? cniArgs(attachment.id, attachment.pod) };
      // Every plugin gets its DEL even when one fails, so host-local frees the
      // IP although, say, a later plugin's binary is gone; a missing binary
      // never ran, so it holds nothing to release.
      let failure: unknown;
      for (const plugin of [...list.plugins].reverse()) {
        if ((await findPlugin(plugin.type, this.#binDirs)) === undefined) {
          this.#log.warn({ id: attachment.id, plugin: plugin.type }, "CNI DEL: plugin binary not found; skipped");
          continue;
        }
        const stdin = pluginStdin(list, plugin, { prevResult, capabilityArgs });
        try {
          await this.#exec("DEL", plugin.type, { ...base, stdin }, signal);
        } catch (err) {
          failure ??= err;
          if (signal?.aborted) break;
        }
      }
      if (failure !== undefined) throw failure;
      await rm(this.#cachePath(attachment.id), { force: true });
      this.#log.debug({ id: attachment.id, network: list.name, netns: netns || "(gone)" }, "CNI DEL done");
    });
  }

  /** CHECK (CNI ≥ 0.4.0, unless the config disables it) against the cached ADD result. */
  check(attachment: Attachment, signal?: AbortSignal): Promise<void> {
    return this.#serialize(attachment.id, "CHECK", async () => {
      const cached = await this.#readCache(attachment.id);
      if (cached?.result === undefined) {
        throw new CniError({ cniCode: CniErrorCode.UNKNOWN_CONTAINER, message: `sandbox ${attachment.id}: no cached CNI result to CHECK against` });
      }
      const list = cached.config;
      if (list.disableCheck || compareVersions(list.cniVersion, "0.4.0") < 0) return;
      for (const plugin of list.plugins) {
        const stdin = pluginStdin(list, plugin, { prevResult: cached.result, capabilityArgs: cached.capabilityArgs });
        await this.#exec("CHECK", plugin.type, { ...cached, netns: attachment.netns || cached.netns, stdin }, signal);
      }
    });
  }

  /** The cached attachment of a sandbox (pod IPs after a restart), if any. */
  async cached(id: string): Promise<(CachedAttachment & { readonly parsed?: NetworkResult }) | undefined> {
    const record = await this.#readCache(id);
    if (record?.result === undefined) return record;
    return { ...record, parsed: parseResult(record.result, record.ifName) };
  }

  // the chain's own budget, so that a hung plugin cannot outlast the CRI call (ADD) or the undo (DEL)
  #deadline(command: CniCommand, id: string, ms: number, signal: AbortSignal | undefined): AbortSignal {
    const budget = new AbortController();
    const timer = setTimeout(() => budget.abort(new DOMException(`CNI ${command} for ${id} did not finish within ${ms} ms`, "TimeoutError")), ms);
    timer.unref();
    const combined = signal ? AbortSignal.any([signal, budget.signal]) : budget.signal;
    combined.addEventListener("abort", () => clearTimeout(timer), { once: true });
    return combined;
  }

  /** Removes the temporary files of cache writes a crash interrupted (the entries they were to replace are intact). */
  async sweep(): Promise<void> {
    const names = await readdir(this.#cacheDir).catch(() => [] as string[]);
    await Promise.all(names.filter((n) => n.startsWith(".") && n.endsWith(".tmp")).map((n) => rm(join(this.#cacheDir, n), { force: true })));
  }

  #currentConfig(): NetworkConfigList {
    if (typeof this.#config !== "function") return this.#config;
    const state = this.#config();
    if (state.config) return state.config;
    throw new CniError({ cniCode: CniErrorCode.TRY_AGAIN_LATER, message: `CNI network not ready: ${state.reason}` });
  }

  async #exec(
    command: CniCommand,
    type: string,
    call: { containerId: string; ifName: string; netns: string; cniArgs: string; stdin: Record<string, unknown> },
    signal: AbortSignal | undefined,
  ): Promise<unknown> {
    const timeout = new AbortController();
    const timer = setTimeout(
      () => timeout.abort(new DOMException(`CNI plugin ${type} ${command} for ${call.containerId} timed out after ${this.#timeoutMs} ms`, "TimeoutError")),
      this.#timeoutMs,
    );
    try {
      return await execPlugin(type, {
        command,
        containerId: call.containerId,
        netns: call.netns,
        ifName: call.ifName,
        args: call.cniArgs,
        binDirs: this.#binDirs,
        stdin: call.stdin,
        signal: signal ? AbortSignal.any([signal, timeout.signal]) : timeout.signal,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  #serialize<T>(id: string, command: CniCommand, work: () => Promise<T>): Promise<T> {
    if (!SAFE_ID.test(id)) {
      return Promise.reject(new CniError({ cniCode: CniErrorCode.INVALID_ENVIRONMENT, message: `container id "${id}" is not usable as a CNI container id` }));
    }
    const observed = async (): Promise<T> => {
      const started = process.hrtime.bigint();
      let failed = true;
      try {
        const result = await work();
        failed = false;
        return result;
      } finally {
        this.#observe?.(command, Number(process.hrtime.bigint() - started) / 1e9, failed);
      }
    };
    const previous = this.#queues.get(id) ?? Promise.resolve();
    const next = previous.then(observed, observed);
    const settled = next.then(() => {}, () => {});
    this.#queues.set(id, settled);
    void settled.then(() => {
      if (this.#queues.get(id) === settled) this.#queues.delete(id);
    });
    return next;
  }

  #cachePath(id: string): string {
    return join(this.#cacheDir, `${id}.json`);
  }

  async #readCache(id: string): Promise<CachedAttachment | undefined> {
    const path = this.#cachePath(id);
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
    try {
      const record = JSON.parse(text) as CachedAttachment;
      if (record.kind !== "cribCniCacheV1" || record.containerId !== id || typeof record.config?.cniVersion !== "string") {
        throw new Error("not a crib CNI cache record for this id");
      }
      return record;
    } catch (err) {
      this.#log.warn({ id, path, err }, "ignoring unreadable CNI cache file");
      return undefined;
    }
  }

  // fsync'd: a crash leaves the old or the new record
  async #writeCache(record: CachedAttachment): Promise<void> {
    await mkdir(this.#cacheDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.#cachePath(record.containerId), JSON.stringify(record), { mode: 0o600, sync: true });
  }

}
