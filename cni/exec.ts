// Invoking one CNI plugin as the spec describes: parameters in CNI_* variables,
// the network config on stdin, a result or an error object on stdout.
import { spawn } from "node:child_process";
import type { NetworkConfigList, PluginConfig } from "./config.js";
import { findPlugin } from "./config.js";

export type CniCommand = "ADD" | "DEL" | "CHECK" | "VERSION" | "STATUS" | "GC";

/** Well-known error codes from the spec. */
export const CniErrorCode = {
  /** Not a code from a plugin: the plugin could not be run or gave no error object. */
  NONE: 0,
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  UNKNOWN_CONTAINER: 3,
  INVALID_ENVIRONMENT: 4,
  IO_FAILURE: 5,
  DECODING_FAILURE: 6,
  INVALID_NETWORK_CONFIG: 7,
  TRY_AGAIN_LATER: 11,
  PLUGIN_NOT_AVAILABLE: 50,
  PLUGIN_NOT_AVAILABLE_LIMITED: 51,
} as const;

/** A failed CNI operation; `cniCode` is the plugin's code (0 when it reported none). */
export class CniError extends Error {
  readonly cniCode: number;
  readonly plugin: string | undefined;
  readonly details: string | undefined;

  constructor(init: { cniCode: number; message: string; plugin?: string; details?: string; cause?: unknown }) {
    super(init.plugin ? `plugin type="${init.plugin}" failed: ${init.message}` : init.message, { cause: init.cause });
    this.name = "CniError";
    this.cniCode = init.cniCode;
    this.plugin = init.plugin;
    this.details = init.details;
  }
}

export interface PluginInvocation {
  readonly command: CniCommand;
  readonly containerId: string;
  /** Path of the netns; "" is allowed for DEL when it is gone. */
  readonly netns: string;
  readonly ifName: string;
  /** CNI_ARGS: "K=V;K=V". */
  readonly args: string;
  readonly binDirs: readonly string[];
  /** What the plugin reads on stdin (see pluginStdin). */
  readonly stdin: Readonly<Record<string, unknown>>;
  readonly signal?: AbortSignal;
}

// Generous for a JSON result; stops a broken plugin from filling our memory.
const MAX_OUTPUT = 4 * 1024 * 1024;

/**
 * The stdin config of `plugin` in `list`: `name` and `cniVersion` from the list,
 * `prevResult` when there is one, and `runtimeConfig` holding only the
 * capability arguments the plugin declared in `capabilities`.
 */
export function pluginStdin(
  list: NetworkConfigList,
  plugin: PluginConfig,
  options: { prevResult?: unknown; capabilityArgs?: Readonly<Record<string, unknown>> } = {},
): Record<string, unknown> {
  const conf: Record<string, unknown> = { ...plugin, name: list.name, cniVersion: list.cniVersion };
  delete conf["runtimeConfig"];
  delete conf["prevResult"];
  if (options.prevResult !== undefined) conf["prevResult"] = options.prevResult;
  const runtimeConfig: Record<string, unknown> = {};
  for (const [capability, enabled] of Object.entries(plugin.capabilities ?? {})) {
    const value = options.capabilityArgs?.[capability];
    if (enabled === true && value !== undefined) runtimeConfig[capability] = value;
  }
  if (Object.keys(runtimeConfig).length > 0) conf["runtimeConfig"] = runtimeConfig;
  return conf;
}

// The parent's CNI_* variables must not leak into the plugin's parameters.
function pluginEnv(inv: PluginInvocation): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("CNI_")) env[k] = v;
  // go-iptables and friends look tools up in PATH; a bare daemon env may have none.
  env["PATH"] ??= "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  return {
    ...env,
    CNI_COMMAND: inv.command,
    CNI_CONTAINERID: inv.containerId,
    CNI_NETNS: inv.netns,
    CNI_IFNAME: inv.ifName,
    CNI_ARGS: inv.args,
    CNI_PATH: inv.binDirs.join(":"),
  };
}

function parseError(type: string, stdout: string, stderr: string, exit: string): CniError {
  const text = stdout.trim();
  if (text !== "") {
    try {
      const err = JSON.parse(text) as unknown;
      if (typeof err === "object" && err !== null && typeof (err as { code?: unknown }).code === "number") {
        const { code, msg, details } = err as { code: number; msg?: unknown; details?: unknown };
        return new CniError({
          cniCode: code,
          plugin: type,
          message: typeof msg === "string" && msg !== "" ? msg : `error code ${code}`,
          ...(typeof details === "string" && details !== "" ? { details } : {}),
        });
      }
    } catch {
      // not JSON: fall through and show what it printed
    }
  }
  const said = text || stderr.trim();
  return new CniError({ cniCode: CniErrorCode.NONE, plugin: type, message: said ? `${exit}: ${said.slice(0, 2000)}` : exit });
}

/**
 * Runs plugin `type` once. Resolves with its parsed stdout (undefined when it
 * printed nothing, as for DEL and CHECK); rejects with a CniError, or with the
 * signal's reason when `signal` aborts (the plugin is killed).
 */
export async function execPlugin(type: string, inv: PluginInvocation): Promise<unknown> {
  inv.signal?.throwIfAborted();
  const path = await findPlugin(type, inv.binDirs);
  if (path === undefined) {
    throw new CniError({
      cniCode: CniErrorCode.NONE,
      plugin: type,
      message: `plugin binary not found in ${inv.binDirs.join(", ") || "(no bin dirs)"}`,
    });
  }
  inv.signal?.throwIfAborted();
  // its own process group: a hung plugin is killed with everything it started
  // (a child holding its stdout would otherwise keep the call from ending)
  const child = spawn(path, [], { env: pluginEnv(inv), stdio: ["pipe", "pipe", "pipe"], detached: true });
  const killGroup = (): void => {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // the group is gone already
    }
  };
  inv.signal?.addEventListener("abort", killGroup, { once: true });
  child.once("close", () => inv.signal?.removeEventListener("abort", killGroup));
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let outBytes = 0;
  let errBytes = 0;
  child.stdout.on("data", (chunk: Buffer) => {
    outBytes += chunk.length;
    if (outBytes <= MAX_OUTPUT) out.push(chunk);
  });
  child.stderr.on("data", (chunk: Buffer) => {
    errBytes += chunk.length;
    if (errBytes <= 64 * 1024) err.push(chunk);
  });
  // A plugin that exits without reading stdin gives EPIPE; its exit status tells the story.
  child.stdin.on("error", () => {});
  child.stdin.end(JSON.stringify(inv.stdin));

  // On abort, wait for the killed plugin to be gone: a DEL that follows must not overlap it.
  const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on("error", (e) => {
      if (child.pid === undefined) reject(e);
    });
    child.once("close", (code, signal) => resolve({ code, signal }));
  }).catch((e: unknown) => {
    if (inv.signal?.aborted) throw inv.signal.reason;
    throw new CniError({ cniCode: CniErrorCode.NONE, plugin: type, message: `cannot run ${path}: ${(e as Error).message}`, cause: e });
  });
  if (inv.signal?.aborted) throw inv.signal.reason;

  const stdout = Buffer.concat(out).toString("utf8");
  const stderr = Buffer.concat(err).toString("utf8");
  if (exit.code !== 0) {
    throw parseError(type, stdout, stderr, exit.signal ? `killed by ${exit.signal}` : `exit status ${exit.code}`);
  }
  if (outBytes > MAX_OUTPUT) {
    throw new CniError({ cniCode: CniErrorCode.NONE, plugin: type, message: `output is larger than ${MAX_OUTPUT} bytes` });
  }
  if (stdout.trim() === "") return undefined;
  try {
    return JSON.parse(stdout) as unknown;
  } catch (e) {
    throw new CniError({
      cniCode: CniErrorCode.DECODING_FAILURE,
      plugin: type,
      message: `${inv.command} result is not JSON: ${(e as Error).message}: ${stdout.slice(0, 200)}`,
    });
  }
}
