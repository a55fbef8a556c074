// Which endpoints serve a registry host, and how to talk to each: containerd's
// certs.d format (`<config_path>/<host>/hosts.toml`, then `_default`), merged
// with the per-host tables of crib's own config file. The result is an ordered
// list: mirrors first, the registry itself last.
import { readdir, readFile } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import { parse as parseToml, type TomlTable } from "smol-toml";
import { CribError } from "../errors.js";
import { DEFAULT_DOMAIN } from "./reference.js";

export type HostCapability = "pull" | "resolve" | "push";

/** Credentials as the CRI's AuthConfig carries them. */
export interface AuthConfig {
  username?: string;
  password?: string;
  /** base64 of `username:password` */
  auth?: string;
  server_address?: string;
  /** an OAuth2 refresh token, exchanged at the token realm */
  identity_token?: string;
  /** a bearer token sent as it is */
  registry_token?: string;
}

/** One `[registry.hosts."<host>"]` table of crib's config file; empty strings count as unset. */
export interface RegistryHostConfig {
  mirrors?: readonly string[];
  plain_http?: boolean;
  skip_verify?: boolean;
  ca_file?: string;
  client_cert?: string;
  client_key?: string;
  username?: string;
  password?: string;
  auth?: string;
  identity_token?: string;
}

export interface HostsOptions {
  /** certs.d directories, `:`-separated as containerd's config_path; the first that has the host wins */
  configPath?: string;
  hosts?: Readonly<Record<string, RegistryHostConfig>>;
}

/** TLS settings of an endpoint, in the shape of node's tls.connect options. */
export interface TlsSettings {
  ca?: Buffer[];
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized: boolean;
}

export interface RegistryEndpoint {
  /** host[:port] to dial */
  host: string;
  scheme: "http" | "https";
  /** base path of the API: `/v2` unless override_path */
  path: string;
  capabilities: readonly HostCapability[];
  tls: TlsSettings;
  /** try HTTPS and fall back to plain HTTP when the server does not speak TLS (localhost without config) */
  httpFallback: boolean;
  header: Readonly<Record<string, readonly string[]>>;
  /** true for a mirror in front of the registry, false for the registry itself */
  mirror: boolean;
  credentials?: AuthConfig;
}

export class HostsConfigError extends CribError {
  constructor(readonly file: string, problem: string) {
    super("invalid-argument", `registry hosts config ${file}: ${problem}`);
    this.name = "HostsConfigError";
  }
}

const ALL_CAPABILITIES: readonly HostCapability[] = ["pull", "resolve", "push"];
const DOCKER_HUB_HOST = "registry-1.docker.io";

// One host entry before its files are read: what hosts.toml or the config says.
export interface HostEntry {
  scheme: "http" | "https";
  host: string;
  path: string;
  capabilities: readonly HostCapability[];
  caFiles: string[];
  clientPairs: Array<[string, string]>;
  skipVerify?: boolean;
  header: Record<string, string[]>;
  upstream: boolean;
  /** the URL was written down (server or mirror), not defaulted */
  explicit: boolean;
}

/**
 * The endpoints to try for `domain` (a reference's registry host), in order.
 * Every endpoint has the capabilities it was configured with; callers pick the
 * ones that can resolve, pull or push.
 */
export async function resolveEndpoints(domain: string, options: HostsOptions = {}): Promise<RegistryEndpoint[]> {
  const hosts = options.hosts ?? {};
  const dir = await findHostDir(options.configPath ?? "", domain);
  let entries: HostEntry[];
  if (dir !== undefined) {
    const file = join(dir, "hosts.toml");
    const text = await readFile(file, "utf8").catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return undefined;
      throw err;
    });
    entries = text === undefined ? [await certFilesEntry(dir)] : parseHostsToml(text, { file, dir });
  } else {
    const mirrors = hosts[domain]?.mirrors ?? hosts["*"]?.mirrors ?? [];
    entries = [...mirrors.filter((m) => m !== "").map((m) => mirrorEntry(m)), defaultEntry()];
  }

  return Promise.all(
    entries.map(async (entry) => {
      fillUpstream(entry, domain, hosts[domain]);
      const config = hosts[entry.host] ?? (entry.upstream ? hosts[domain] : undefined);
      return toEndpoint(entry, config, entry.upstream ? hosts[domain] : undefined);
    }),
  );
}

/** Parses one hosts.toml; relative file names are taken from `dir`. */
export function parseHostsToml(text: string, where: { file: string; dir: string }): HostEntry[] {
  let doc: TomlTable;
  try {
    doc = parseToml(text);
  } catch (err) {
    throw new HostsConfigError(where.file, err instanceof Error ? err.message : String(err));
  }
  const entries: HostEntry[] = [];
  const hostTables = doc["host"];
  if (hostTables !== undefined) {
    if (!isTable(hostTables)) throw new HostsConfigError(where.file, `"host" must be a table of [host."<url>"] tables`);
    for (const [url, table] of Object.entries(hostTables)) {
      if (!isTable(table)) throw new HostsConfigError(where.file, `host "${url}" must be a table`);
      entries.push(parseHostTable(url, table, where, false));
    }
  }
  const server = doc["server"];
  if (server !== undefined && typeof server !== "string") throw new HostsConfigError(where.file, `"server" must be a string`);
  entries.push(parseHostTable(server ?? "", doc, where, true));
  return entries;
}

function parseHostTable(url: string, table: TomlTable, where: { file: string; dir: string }, upstream: boolean): HostEntry {
  const what = upstream ? "server" : `host "${url}"`;
  const fail = (problem: string): never => {
    throw new HostsConfigError(where.file, `${what}: ${problem}`);
  };
  const entry: HostEntry = url === "" ? defaultEntry() : mirrorEntry(url, fail);
  entry.upstream = upstream;

  const overridePath = table["override_path"];
  if (overridePath !== undefined && typeof overridePath !== "boolean") fail(`"override_path" must be a boolean`);
  if (url !== "") entry.path = apiPath(new URL(withScheme(url)).pathname, overridePath === true);

  const plainHttp = table["plain_http"];
  if (plainHttp !== undefined && typeof plainHttp !== "boolean") fail(`"plain_http" must be a boolean`);
  if (plainHttp === true) entry.scheme = "http";

  const capabilities = table["capabilities"];
  if (capabilities !== undefined) {
    if (!Array.isArray(capabilities)) return fail(`"capabilities" must be a list`);
    entry.capabilities = capabilities.map((c) =>
      c === "pull" || c === "resolve" || c === "push" ? c : fail(`unknown capability ${JSON.stringify(c)}`),
    );
  }

  const skipVerify = table["skip_verify"];
  if (skipVerify !== undefined && typeof skipVerify !== "boolean") fail(`"skip_verify" must be a boolean`);
  if (typeof skipVerify === "boolean") entry.skipVerify = skipVerify;

  const abs = (p: string): string => (isAbsolute(p) ? p : join(where.dir, p));
  const ca = table["ca"];
  if (ca !== undefined) {
    const files = typeof ca === "string" ? [ca] : Array.isArray(ca) ? ca : fail(`"ca" must be a file name or a list of them`);
    entry.caFiles = files.map((f) => (typeof f === "string" ? abs(f) : fail(`"ca" must list file names`)));
  }

  // client = "both.pem" | ["a.pem", "b.pem"] | [["cert.pem", "key.pem"], …]
  const client = table["client"];
  if (client !== undefined) {
    const pairs = typeof client === "string" ? [client] : Array.isArray(client) ? client : fail(`"client" must be a file name or a list`);
    entry.clientPairs = pairs.map((pair): [string, string] => {
      if (typeof pair === "string") return [abs(pair), abs(pair)];
      if (Array.isArray(pair) && pair.length >= 1 && pair.length <= 2 && pair.every((p) => typeof p === "string")) {
        const [cert = "", key = cert] = pair as string[];
        return [abs(cert), abs(key)];
      }
      return fail(`"client" entries must be a file name or a [cert, key] pair`);
    });
  }

  const header = table["header"];
  if (header !== undefined) {
    if (!isTable(header)) return fail(`"header" must be a table`);
    for (const [name, value] of Object.entries(header)) {
      const values = typeof value === "string" ? [value] : Array.isArray(value) ? value : fail(`header "${name}" must be a string or a list`);
      entry.header[name] = values.map((v) => (typeof v === "string" ? v : fail(`header "${name}" must hold strings`)));
    }
  }
  return entry;
}

// The registry itself, before its host is known.
function defaultEntry(): HostEntry {
  return { scheme: "https", host: "", path: "/v2", capabilities: ALL_CAPABILITIES, caFiles: [], clientPairs: [], header: {}, upstream: true, explicit: false };
}

function mirrorEntry(url: string, fail: (problem: string) => never = (p) => {
  throw new CribError("invalid-argument", `registry mirror "${url}": ${p}`);
}): HostEntry {
  let parsed: URL;
  try {
    parsed = new URL(withScheme(url));
  } catch {
    return fail(`"${url}" is not a URL`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") fail(`scheme of "${url}" must be http or https`);
  return {
    scheme: parsed.protocol === "http:" ? "http" : "https",
    host: parsed.host,
    path: apiPath(parsed.pathname, false),
    capabilities: ALL_CAPABILITIES,
    caFiles: [],
    clientPairs: [],
    header: {},
    upstream: false,
    explicit: true,
  };
}

const withScheme = (url: string): string => (/^https?:\/\//i.test(url) ? url : `https://${url}`);

// containerd appends /v2 to a host's path unless override_path says the path is the API root.
function apiPath(pathname: string, overridePath: boolean): string {
  const path = pathname.replace(/\/+$/, "");
  if (overridePath) return path;
  return path.endsWith("/v2") ? path : `${path}/v2`;
}

function fillUpstream(entry: HostEntry, domain: string, config: RegistryHostConfig | undefined): void {
  if (!entry.upstream || entry.host !== "") return;
  if (domain === DEFAULT_DOMAIN) {
    entry.host = DOCKER_HUB_HOST;
  } else {
    entry.host = domain;
    if (config?.plain_http === true) entry.scheme = "http";
  }
}

async function toEndpoint(
  entry: HostEntry,
  config: RegistryHostConfig | undefined,
  registryConfig: RegistryHostConfig | undefined,
): Promise<RegistryEndpoint> {
  const set = (s: string | undefined): s is string => s !== undefined && s !== "";
  const caFiles = entry.caFiles.length > 0 ? entry.caFiles : set(config?.ca_file) ? [config.ca_file] : [];
  let pair = entry.clientPairs[0];
  if (pair === undefined && set(config?.client_cert)) pair = [config.client_cert, set(config.client_key) ? config.client_key : config.client_cert];
  const skipVerify = entry.skipVerify ?? config?.skip_verify ?? false;

  const tls: TlsSettings = { rejectUnauthorized: !skipVerify };
  if (caFiles.length > 0) tls.ca = await Promise.all(caFiles.map((f) => readTlsFile(f, "ca")));
  if (pair !== undefined) {
    tls.cert = await readTlsFile(pair[0], "client certificate");
    tls.key = await readTlsFile(pair[1], "client key");
  }

  // A local registry that was not configured: HTTPS first, then plain HTTP, as containerd does.
  const unconfiguredLocal =
    entry.upstream && !entry.explicit && entry.scheme === "https" && isLocalhost(entry.host) &&
    entry.caFiles.length === 0 && entry.clientPairs.length === 0 && entry.skipVerify === undefined &&
    !config?.skip_verify && !set(config?.ca_file) && !set(config?.client_cert);
  if (unconfiguredLocal) tls.rejectUnauthorized = false;

  const credentials = credentialsOf(config) ?? credentialsOf(registryConfig);
  return {
    host: entry.host,
    scheme: entry.scheme,
    path: entry.path,
    capabilities: entry.capabilities,
    tls,
    httpFallback: unconfiguredLocal,
    header: entry.header,
    mirror: !entry.upstream,
    ...(credentials === undefined ? {} : { credentials }),
  };
}

function credentialsOf(config: RegistryHostConfig | undefined): AuthConfig | undefined {
  if (config === undefined) return undefined;
  const auth: AuthConfig = {};
  if (config.username) auth.username = config.username;
  if (config.password) auth.password = config.password;
  if (config.auth) auth.auth = config.auth;
  if (config.identity_token) auth.identity_token = config.identity_token;
  return Object.keys(auth).length === 0 ? undefined : auth;
}

async function readTlsFile(file: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw new HostsConfigError(file, `cannot read ${what}: ${(err as Error).message}`);
  }
}

// Docker's certs.d layout without hosts.toml: *.crt are CAs, *.cert with a matching *.key are client pairs.
async function certFilesEntry(dir: string): Promise<HostEntry> {
  const entry = defaultEntry();
  const names = (await readdir(dir)).sort();
  for (const name of names) {
    if (name.endsWith(".crt")) entry.caFiles.push(join(dir, name));
    if (name.endsWith(".cert")) {
      const key = `${name.slice(0, -".cert".length)}.key`;
      if (!names.includes(key)) throw new HostsConfigError(join(dir, name), `client certificate has no matching ${key}`);
      entry.clientPairs.push([join(dir, name), join(dir, key)]);
    }
  }
  return entry;
}

/** The directory of `<config_path>` that configures `host`: `host_port`, then `host:port`, then `_default`. */
export async function findHostDir(configPath: string, host: string): Promise<string | undefined> {
  const colon = host.lastIndexOf(":");
  const names = colon > 0 ? [`${host.slice(0, colon)}_${host.slice(colon + 1)}`, host, "_default"] : [host, "_default"];
  for (const root of configPath.split(":").filter((p) => p !== "")) {
    for (const name of names) {
      const dir = join(root, name);
      try {
        await readdir(dir);
        return dir;
      } catch {
        // not configured here
      }
    }
  }
  return undefined;
}

export function isLocalhost(host: string): boolean {
  const name = host.startsWith("[") ? host.slice(1, host.indexOf("]")) : host.replace(/:\d+$/, "");
  return name === "localhost" || name === "::1" || /^127\.\d+\.\d+\.\d+$/.test(name);
}

/**
 * The credentials to send to an endpoint: the request's own when they are
 * meant for it (no server_address, or one naming this host), else the
 * configured ones.
 */
export function credentialsFor(
  auth: AuthConfig | undefined,
  endpoint: Pick<RegistryEndpoint, "host" | "credentials">,
): AuthConfig | undefined {
  if (auth !== undefined && hasCredentials(auth)) {
    const address = auth.server_address ?? "";
    if (address === "" || serverHosts(address).includes(endpoint.host)) return auth;
  }
  return endpoint.credentials;
}

const hasCredentials = (auth: AuthConfig): boolean =>
  Boolean(auth.username || auth.password || auth.auth || auth.identity_token || auth.registry_token);

// `https://index.docker.io/v1/` and friends all name Docker Hub.
function serverHosts(address: string): string[] {
  let host: string;
  try {
    host = new URL(withScheme(address)).host;
  } catch {
    return [];
  }
  return host === "index.docker.io" || host === DOCKER_HUB_HOST || host === DEFAULT_DOMAIN
    ? [DEFAULT_DOMAIN, DOCKER_HUB_HOST, "index.docker.io"]
    : [host];
}

const isTable = (v: unknown): v is TomlTable => typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
