// crib's configuration: one schema that validates the TOML file, supplies
// defaults, and renders the documented default file (`crib config default`).
import { readFile } from "node:fs/promises";
import { parse as parseToml } from "smol-toml";

export type LogLevel = "trace" | "debug" | "info" | "warn" | "error" | "fatal";

export interface RuntimeHandler {
  runtime_type: string;
  binary_name: string;
  systemd_cgroup: boolean;
}

export interface RegistryHost {
  mirrors: string[];
  plain_http: boolean;
  skip_verify: boolean;
  ca_file: string;
  client_cert: string;
  client_key: string;
  username: string;
  password: string;
  auth: string;
  identity_token: string;
}

export interface Config {
  listen: string;
  root: string;
  state: string;
  log_level: LogLevel;
  default_runtime: string;
  containerd: { address: string; namespace: string; binary: string };
  cni: { conf_dir: string; bin_dirs: string[]; manage_from_node: boolean; add_timeout: number; del_timeout: number };
  sandbox: { image: string; image_archive: string; netns_prefix: string };
  registry: {
    config_path: string;
    max_concurrent_downloads: number;
    progress_timeout: number;
    connect_timeout: number;
    response_header_timeout: number;
    max_resumes: number;
    failed_pull_keep: number;
    hosts: Record<string, RegistryHost>;
  };
  streaming: {
    address: string;
    port: number;
    tls: boolean;
    tls_cert: string;
    tls_key: string;
    token_ttl: number;
    idle_timeout: number;
    max_streams: number;
  };
  containers: { max_log_line_size: number; exec_sync_max_output: number; stop_grace_default: number };
  runtimes: Record<string, RuntimeHandler>;
  metrics: { address: string };
  cdi: { enabled: boolean; spec_dirs: string[] };
}

export class ConfigError extends Error {
  constructor(readonly file: string, readonly key: string, problem: string) {
    super(`${file}: ${key ? `key "${key}": ` : ""}${problem}`);
    this.name = "ConfigError";
  }
}

type Kind = "string" | "int" | "bool" | "strings" | "duration" | "size" | "loglevel";
interface Leaf { kind: Kind; doc: string; default: unknown; later?: boolean }
interface Table { doc?: string; keys: Record<string, Leaf | Table>; mapOf?: Table }
const isLeaf = (x: Leaf | Table): x is Leaf => "kind" in x;

const runtimeHandler: Table = {
  keys: {
    runtime_type: { kind: "string", default: "io.containerd.runc.v2", doc: "containerd runtime (shim) used for this handler" },
    binary_name: { kind: "string", default: "", doc: "runc binary the shim runs; empty uses runc from PATH" },
    systemd_cgroup: { kind: "bool", default: false, doc: "use the systemd cgroup driver instead of cgroupfs" },
  },
};

const registryHost: Table = {
  keys: {
    mirrors: { kind: "strings", default: [], doc: "mirror endpoints tried in order before the host itself" },
    plain_http: { kind: "bool", default: false, doc: "talk plain HTTP to this host" },
    skip_verify: { kind: "bool", default: false, doc: "do not verify the host's TLS certificate" },
    ca_file: { kind: "string", default: "", doc: "extra CA bundle for this host" },
    client_cert: { kind: "string", default: "", doc: "client certificate for mutual TLS" },
    client_key: { kind: "string", default: "", doc: "key of client_cert" },
    username: { kind: "string", default: "", doc: "registry credentials (used when the CRI request carries none)" },
    password: { kind: "string", default: "", doc: "" },
    auth: { kind: "string", default: "", doc: "base64 of username:password" },
    identity_token: { kind: "string", default: "", doc: "OAuth2 refresh token" },
  },
};

// The schema: key names are part of crib's interface.
const schema: Table = {
  keys: {
    listen: { kind: "string", default: "/run/crib/crib.sock", doc: "unix socket the CRI is served on" },
    root: { kind: "string", default: "/var/lib/crib", doc: "persistent state (sandbox files, CNI cache, its own containerd)" },
    state: { kind: "string", default: "/run/crib", doc: "runtime state that does not survive a reboot" },
    log_level: { kind: "loglevel", default: "info", doc: "trace, debug, info, warn, error or fatal" },
    default_runtime: { kind: "string", default: "runc", doc: "runtime handler used when a pod names none" },
    containerd: {
      keys: {
        address: { kind: "string", default: "", doc: "containerd socket; empty: use /run/containerd/containerd.sock if it answers, else start crib's own containerd" },
        namespace: { kind: "string", default: "crib", doc: "containerd namespace holding crib's images, containers and snapshots" },
        binary: { kind: "string", default: "containerd", doc: "containerd binary crib starts when it runs its own" },
      },
    },
    cni: {
      keys: {
        conf_dir: { kind: "string", default: "/etc/cni/net.d", doc: "directory of CNI network configs; the lexicographically first valid one is used" },
        bin_dirs: { kind: "strings", default: ["/opt/cni/bin", "/usr/lib/cni"], doc: "directories searched for CNI plugins" },
        manage_from_node: { kind: "bool", default: false, doc: "let `crib bootstrap` render the host-local ranges of the network config from the Node's podCIDRs" },
        add_timeout: { kind: "duration", default: 60_000, doc: "longest a CNI ADD may take (capped by the request's remaining time); a plugin still running then is killed with its process group" },
        del_timeout: { kind: "duration", default: 30_000, doc: "longest a CNI DEL may take; one that times out while undoing is kept recorded and retried" },
      },
    },
    sandbox: {
      keys: {
        image: { kind: "string", default: "registry.k8s.io/pause:3.10", doc: "pause image of every pod sandbox" },
        image_archive: { kind: "string", default: "/usr/local/lib/crib/pause.tar", doc: "OCI archive imported (with ctr) when the sandbox image is missing, before pulling it; deploy/setup.sh installs crib's pause there; empty: pull only" },
        netns_prefix: { kind: "string", default: "crib-", doc: "name prefix of the pods' network namespaces in /var/run/netns; crib's are exactly those with it, so two cribs on one node need different ones" },
      },
    },
    registry: {
      keys: {
        config_path: { kind: "string", default: "/etc/crib/certs.d", doc: "certs.d directory of <host>/hosts.toml files (containerd's format)" },
        max_concurrent_downloads: { kind: "int", default: 3, doc: "layers of one image downloaded at once" },
        progress_timeout: { kind: "duration", default: 30_000, doc: "a transfer that moves no bytes this long is cut (then resumed, up to max_resumes)" },
        connect_timeout: { kind: "duration", default: 10_000, doc: "a registry that takes longer to accept the TCP connection is not reachable" },
        response_header_timeout: { kind: "duration", default: 30_000, doc: "a request whose response headers take longer has stalled" },
        max_resumes: { kind: "int", default: 3, doc: "times a broken or stalled blob download resumes at the bytes it has before the pull fails" },
        failed_pull_keep: { kind: "duration", default: 600_000, doc: "what a failed pull downloaded is kept this long for the next attempt, then crib deletes its lease; 0s deletes it at once" },
      },
      // [registry.hosts."<host>"] tables
    },
    streaming: {
      keys: {
        address: { kind: "string", default: "127.0.0.1", doc: "address of the exec/attach/port-forward server" },
        port: { kind: "int", default: 0, doc: "its port; 0 picks a free one" },
        tls: { kind: "bool", default: false, doc: "serve TLS; a self-signed certificate is made when none is given" },
        tls_cert: { kind: "string", default: "", doc: "certificate file" },
        tls_key: { kind: "string", default: "", doc: "key file" },
        token_ttl: { kind: "duration", default: 60_000, doc: "lifetime of a streaming URL" },
        idle_timeout: { kind: "duration", default: 4 * 3600_000, doc: "an idle stream is closed after this" },
        max_streams: { kind: "int", default: 100, doc: "concurrent streams; more are refused" },
      },
    },
    containers: {
      keys: {
        max_log_line_size: { kind: "size", default: 16 * 1024, doc: "longer log lines are split into partial (P) entries" },
        exec_sync_max_output: { kind: "size", default: 16 * 1024 * 1024, doc: "ExecSync keeps at most this much of stdout and of stderr" },
        stop_grace_default: { kind: "duration", default: 0, doc: "grace period for StopPodSandbox's containers when kubelet gives none" },
      },
    },
    cdi: {
      keys: {
        enabled: { kind: "bool", default: true, doc: "give containers the CDI devices kubelet names (CDI_devices, cdi.k8s.io/ annotations)" },
        spec_dirs: { kind: "strings", default: ["/etc/cdi", "/var/run/cdi"], doc: "directories of CDI spec files (.json, .yaml, .yml); a later directory overrides an earlier one for the same device" },
      },
    },
    metrics: {
      keys: {
        address: { kind: "string", default: "", doc: "Prometheus endpoint host:port serving /metrics (loopback recommended); empty: off" },
      },
    },
  },
};

const defaultRuntimes = (): Record<string, RuntimeHandler> => ({
  runc: { runtime_type: "io.containerd.runc.v2", binary_name: "", systemd_cgroup: false },
});

export function parseDuration(value: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(value.trim());
  if (!m) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as "ms" | "s" | "m" | "h"];
  return Math.round(Number(m[1]) * unit);
}

function parseSize(value: unknown): number | undefined {
  if (typeof value === "number" && Number.isInteger(value) && value >= 0) return value;
  if (typeof value !== "string") return undefined;
  const m = /^(\d+)\s*(|k|ki|kib|m|mi|mib|g|gi|gib)$/i.exec(value.trim());
  if (!m) return undefined;
  const mult: Record<string, number> = { "": 1, k: 1e3, ki: 1024, kib: 1024, m: 1e6, mi: 1024 ** 2, mib: 1024 ** 2, g: 1e9, gi: 1024 ** 3, gib: 1024 ** 3 };
  return Number(m[1]) * (mult[m[2]!.toLowerCase()] ?? 1);
}

const LEVELS = ["trace", "debug", "info", "warn", "error", "fatal"];

function leafValue(file: string, key: string, leaf: Leaf, raw: unknown): unknown {
  const bad = (want: string) => new ConfigError(file, key, `expected ${want}, got ${JSON.stringify(raw)}`);
  switch (leaf.kind) {
    case "string":
      if (typeof raw !== "string") throw bad("a string");
      return raw;
    case "loglevel":
      if (typeof raw !== "string" || !LEVELS.includes(raw)) throw bad(`one of ${LEVELS.join(", ")}`);
      return raw;
    case "int":
      if (typeof raw !== "number" || !Number.isInteger(raw) || raw < 0) throw bad("a non-negative integer");
      return raw;
    case "bool":
      if (typeof raw !== "boolean") throw bad("true or false");
      return raw;
    case "strings":
      if (!Array.isArray(raw) || raw.some((s) => typeof s !== "string")) throw bad("an array of strings");
      return raw;
    case "duration": {
      const ms = typeof raw === "string" ? parseDuration(raw) : undefined;
      if (ms === undefined) throw bad('a duration like "300ms", "30s", "5m" or "4h"');
      return ms;
    }
    case "size": {
      const n = parseSize(raw);
      if (n === undefined) throw bad('a size in bytes, or a string like "16KiB"');
      return n;
    }
  }
}

function applyTable(file: string, prefix: string, table: Table, raw: Record<string, unknown>, out: Record<string, unknown>): void {
  for (const [name, value] of Object.entries(raw)) {
    const key = prefix ? `${prefix}.${name}` : name;
    const spec = table.keys[name];
    if (!spec) throw new ConfigError(file, key, "unknown key");
    if (isLeaf(spec)) {
      out[name] = leafValue(file, key, spec, value);
      continue;
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new ConfigError(file, key, "expected a table");
    applyTable(file, key, spec, value as Record<string, unknown>, out[name] as Record<string, unknown>);
  }
}

function defaultsOf(table: Table): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(table.keys)) {
    out[name] = isLeaf(spec) ? structuredClone(spec.default) : defaultsOf(spec);
  }
  return out;
}

export function defaultConfig(): Config {
  const config = defaultsOf(schema) as unknown as Config;
  config.runtimes = defaultRuntimes();
  config.registry.hosts = {};
  return config;
}

function mapOfTables(file: string, prefix: string, table: Table, raw: unknown): Record<string, Record<string, unknown>> {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new ConfigError(file, prefix, "expected a table of tables");
  const out: Record<string, Record<string, unknown>> = {};
  for (const [name, value] of Object.entries(raw)) {
    const key = `${prefix}.${name}`;
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new ConfigError(file, key, "expected a table");
    const entry = defaultsOf(table);
    applyTable(file, key, table, value as Record<string, unknown>, entry);
    out[name] = entry;
  }
  return out;
}

/** Validates a parsed TOML document against the schema; throws ConfigError naming the key. */
export function configFromObject(file: string, raw: Record<string, unknown>): Config {
  const config = defaultConfig();
  const { runtimes, registry, ...rest } = raw;
  const { hosts, ...registryRest } = (registry ?? {}) as Record<string, unknown>;
  if (registry !== undefined && (typeof registry !== "object" || registry === null || Array.isArray(registry))) {
    throw new ConfigError(file, "registry", "expected a table");
  }
  applyTable(file, "", schema, { ...rest, ...(registry === undefined ? {} : { registry: registryRest }) }, config as unknown as Record<string, unknown>);
  if (runtimes !== undefined) {
    config.runtimes = mapOfTables(file, "runtimes", runtimeHandler, runtimes) as unknown as Record<string, RuntimeHandler>;
  }
  if (hosts !== undefined) config.registry.hosts = mapOfTables(file, "registry.hosts", registryHost, hosts) as unknown as Record<string, RegistryHost>;
  if (!config.runtimes[config.default_runtime]) {
    throw new ConfigError(file, "default_runtime", `no [runtimes.${config.default_runtime}] table defines it`);
  }
  for (const [name, handler] of Object.entries(config.runtimes)) {
    if (handler.runtime_type !== "io.containerd.runc.v2") {
      throw new ConfigError(file, `runtimes.${name}.runtime_type`, `unsupported runtime type "${handler.runtime_type}" (crib supports io.containerd.runc.v2)`);
    }
  }
  if (!config.listen.startsWith("/")) throw new ConfigError(file, "listen", `expected an absolute unix socket path, got "${config.listen}"`);
  if ((config.streaming.tls_cert === "") !== (config.streaming.tls_key === "")) {
    throw new ConfigError(file, config.streaming.tls_cert ? "streaming.tls_key" : "streaming.tls_cert", "tls_cert and tls_key are given together or not at all");
  }
  const relative = config.cdi.spec_dirs.find((d) => !d.startsWith("/"));
  if (relative !== undefined) throw new ConfigError(file, "cdi.spec_dirs", `expected absolute directories, got "${relative}"`);
  if (config.metrics.address && !/^(\[[0-9a-fA-F:.]+\]|[^:[\]]*):\d{1,5}$/.test(config.metrics.address)) {
    throw new ConfigError(file, "metrics.address", `expected host:port like "127.0.0.1:9910", got "${config.metrics.address}"`);
  }
  return config;
}

export async function loadConfig(file: string, { required }: { required: boolean }): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" && !required) return defaultConfig();
    throw new ConfigError(file, "", `cannot read: ${(err as Error).message}`);
  }
  let raw: Record<string, unknown>;
  try {
    raw = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(file, "", `not valid TOML: ${(err as Error).message.split("\n")[0]}`);
  }
  return configFromObject(file, raw);
}

/** The cgroup driver of the default runtime handler, as RuntimeConfig reports it. */
export const cgroupDriver = (config: Config): "systemd" | "cgroupfs" =>
  config.runtimes[config.default_runtime]?.systemd_cgroup ? "systemd" : "cgroupfs";

// --- rendering the documented default file ---

function tomlValue(leaf: Leaf): string {
  switch (leaf.kind) {
    case "duration": return JSON.stringify(formatDuration(leaf.default as number));
    case "strings": return `[${(leaf.default as string[]).map((s) => JSON.stringify(s)).join(", ")}]`;
    case "string": case "loglevel": return JSON.stringify(leaf.default);
    default: return String(leaf.default);
  }
}

function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

function renderLeaves(table: Table): string[] {
  const lines: string[] = [];
  for (const [name, spec] of Object.entries(table.keys)) {
    if (!isLeaf(spec)) continue;
    if (spec.doc) lines.push(`# ${spec.doc}${spec.later ? " (accepted; not used yet)" : ""}`);
    lines.push(`${name} = ${tomlValue(spec)}`);
  }
  return lines;
}

/** The complete default configuration, every key with its documentation. */
export function renderDefaultConfig(): string {
  const out = [
    "# crib configuration (/etc/crib/config.toml). Every key is shown with its default.",
    "# Command-line flags (--listen, --root, --state, --log-level, --containerd-address,",
    "# --containerd-namespace) override the file. Unknown keys are an error.",
    "",
    ...renderLeaves(schema),
  ];
  for (const [name, spec] of Object.entries(schema.keys)) {
    if (isLeaf(spec)) continue;
    out.push("", `[${name}]`, ...renderLeaves(spec));
    if (name === "registry") {
      out.push("", "# Per-registry settings, merged with <config_path>/<host>/hosts.toml:", '# [registry.hosts."127.0.0.1:5000"]');
      for (const [key, leaf] of Object.entries(registryHost.keys)) {
        if (isLeaf(leaf)) out.push(`# ${key} = ${tomlValue(leaf)}${leaf.doc ? `  # ${leaf.doc}` : ""}`);
      }
    }
  }
  out.push("", "# Runtime handlers, by the name a RuntimeClass's handler gives; `runc` is the default.");
  for (const [name, handler] of Object.entries(defaultRuntimes())) {
    out.push(`[runtimes.${name}]`);
    for (const [key, leaf] of Object.entries(runtimeHandler.keys)) {
      if (!isLeaf(leaf)) continue;
      out.push(`# ${leaf.doc}`, `${key} = ${JSON.stringify(handler[key as keyof RuntimeHandler])}`);
    }
  }
  return `${out.join("\n")}\n`;
}
