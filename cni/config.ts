// Loading the network configuration list from a CNI conf dir, as libcni does:
// the lexicographically first valid .conflist/.conf/.json file wins.
import { access, constants, readFile, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";

export const DEFAULT_CONF_DIR = "/etc/cni/net.d";
export const DEFAULT_BIN_DIRS: readonly string[] = ["/opt/cni/bin", "/usr/lib/cni"];
export const SUPPORTED_CNI_VERSIONS: readonly string[] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
const CONF_EXTENSIONS = [".conflist", ".conf", ".json"];
// The spec's rule for network names.
const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** One plugin's configuration as written in the file; `type` names its binary. */
export interface PluginConfig {
  readonly type: string;
  readonly capabilities?: Readonly<Record<string, boolean>>;
  readonly [key: string]: unknown;
}

export interface NetworkConfigList {
  readonly cniVersion: string;
  readonly name: string;
  readonly disableCheck: boolean;
  readonly plugins: readonly PluginConfig[];
  /** The file it was loaded from, for logs and Status messages. */
  readonly source: string;
}

export type ConfigLoad =
  | { readonly config: NetworkConfigList; readonly reason?: undefined }
  | { readonly config: undefined; readonly reason: string };

export class InvalidNetworkConfigError extends Error {
  constructor(readonly file: string, reason: string) {
    super(`CNI config ${file}: ${reason}`);
    this.name = "InvalidNetworkConfigError";
  }
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** Compares dotted versions numerically ("0.4.0" < "1.0.0"). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

// CNI 1.1 lets a config list several versions (`cniVersions`); take the highest we speak.
function pickVersion(raw: Record<string, unknown>): string {
  const listed = raw["cniVersions"];
  if (Array.isArray(listed) && listed.length > 0) {
    const ours = listed.filter((v): v is string => typeof v === "string" && SUPPORTED_CNI_VERSIONS.includes(v));
    const best = ours.sort(compareVersions).at(-1);
    if (best === undefined) {
      throw new Error(`none of cniVersions ${JSON.stringify(listed)} is supported (supported: ${SUPPORTED_CNI_VERSIONS.join(", ")})`);
    }
    return best;
  }
  const version = raw["cniVersion"];
  if (typeof version !== "string" || version === "") throw new Error("cniVersion is missing");
  if (!SUPPORTED_CNI_VERSIONS.includes(version)) {
    throw new Error(`cniVersion "${version}" is not supported (supported: ${SUPPORTED_CNI_VERSIONS.join(", ")})`);
  }
  return version;
}

function validName(raw: Record<string, unknown>): string {
  const name = raw["name"];
  if (typeof name !== "string" || name === "") throw new Error("name is missing");
  if (!NETWORK_NAME.test(name)) throw new Error(`name "${name}" has characters other than letters, digits, "_", "." and "-"`);
  return name;
}

function validPlugin(raw: unknown, index: number): PluginConfig {
  if (!isObject(raw)) throw new Error(`plugins[${index}] is not an object`);
  const type = raw["type"];
  if (typeof type !== "string" || type === "") throw new Error(`plugins[${index}] has no type`);
  if (type.includes("/") || type.startsWith(".")) throw new Error(`plugins[${index}] type "${type}" is not a plugin binary name`);
  const capabilities = raw["capabilities"];
  if (capabilities !== undefined && !isObject(capabilities)) throw new Error(`plugins[${index}] (${type}) capabilities is not an object`);
  return raw as PluginConfig;
}

/**
 * Parses one file's bytes. A `.conflist` must hold a list; a `.conf`/`.json`
 * holding a single plugin is wrapped as a one-plugin list (as libcni does).
 */
export function parseNetworkConfig(file: string, text: string): NetworkConfigList {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new InvalidNetworkConfigError(file, `invalid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    if (!isObject(raw)) throw new Error("not a JSON object");
    const isList = file.endsWith(".conflist") || Array.isArray(raw["plugins"]);
    const cniVersion = pickVersion(raw);
    const name = validName(raw);
    if (!isList) {
      return { cniVersion, name, disableCheck: false, plugins: [validPlugin(raw, 0)], source: file };
    }
    const plugins = raw["plugins"];
    if (!Array.isArray(plugins) || plugins.length === 0) throw new Error("plugins is missing or empty");
    const disableCheck = raw["disableCheck"];
    if (disableCheck !== undefined && typeof disableCheck !== "boolean") throw new Error("disableCheck is not a boolean");
    return { cniVersion, name, disableCheck: disableCheck ?? false, plugins: plugins.map(validPlugin), source: file };
  } catch (err) {
    throw new InvalidNetworkConfigError(file, err instanceof Error ? err.message : String(err));
  }
}

/**
 * Loads the first valid network config in `confDir`, in lexicographic order of
 * file names. Invalid files are skipped with a warning naming file and reason.
 */
export async function loadNetworkConfig(confDir: string, log: Logger): Promise<ConfigLoad> {
  let names: string[];
  try {
    names = await readdir(confDir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return { config: undefined, reason: `CNI config directory ${confDir} does not exist` };
    return { config: undefined, reason: `CNI config directory ${confDir}: ${(err as Error).message}` };
  }
  const candidates = names.filter((n) => !n.startsWith(".") && CONF_EXTENSIONS.some((ext) => n.endsWith(ext))).sort();
  for (const name of candidates) {
    const file = join(confDir, name);
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      // Directories named *.conf, files removed while we read, unreadable files.
      log.warn({ file, err }, "skipping unreadable CNI config file");
      continue;
    }
    try {
      return { config: parseNetworkConfig(file, text) };
    } catch (err) {
      log.warn({ file, reason: (err as Error).message }, "skipping invalid CNI config file");
    }
  }
  if (candidates.length === 0) return { config: undefined, reason: `no CNI config found in ${confDir}` };
  return { config: undefined, reason: `no valid CNI config in ${confDir} (${candidates.length} invalid, see logs)` };
}

/** Finds a plugin binary: the first executable `<dir>/<type>` in order. */
export async function findPlugin(type: string, binDirs: readonly string[]): Promise<string | undefined> {
  for (const dir of binDirs) {
    const path = join(dir, type);
    try {
      if (!(await stat(path)).isFile()) continue;
      await access(path, constants.X_OK);
      return path;
    } catch {
      // not in this dir
    }
  }
  return undefined;
}

/** Plugin types of `config` with no executable in any bin dir, for Status and doctor. */
export async function missingPlugins(config: NetworkConfigList, binDirs: readonly string[]): Promise<string[]> {
  const types = [...new Set(config.plugins.map((p) => p.type))];
  const found = await Promise.all(types.map((type) => findPlugin(type, binDirs)));
  return types.filter((_, i) => found[i] === undefined);
}
