// One pinned network namespace per sandbox: /var/run/netns/<prefix><sandbox id>.
//
// Created with `ip netns add`, not in-process: creating a netns needs
// unshare(CLONE_NEWNET) on the calling thread, which Node cannot do without
// moving one of its own threads into the new namespace. A short-lived `ip`
// process does the unshare + bind mount, makes /var/run/netns a shared mount
// so the pin is visible in other mount namespaces, and is the tool operators
// use to inspect the result (`ip netns list`, `ip -n <name> ...`).
// (`unshare --net=<file>` would also work, but needs the mount-propagation
// set-up done by hand.)
import { execFileOffThread } from "./process-runner.js";
import { lstat, readdir, statfs } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { CribError, type ErrorKind } from "./errors.js";

const run = execFileOffThread;

/** Where `ip netns` pins namespaces (iproute2's NETNS_RUN_DIR; /var/run is /run). */
export const NETNS_RUN_DIR = "/var/run/netns";
export const DEFAULT_NETNS_PREFIX = "crib-";
const NSFS_MAGIC = 0x6e736673;
const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export class NetnsError extends CribError {
  constructor(kind: ErrorKind, message: string, options?: ErrorOptions) {
    super(kind, message, options);
    this.name = "NetnsError";
  }
}

/** A tmpfs to mount at `dir` (which exists) with mount(8)'s `-o` options. */
export interface TmpfsMount {
  readonly dir: string;
  readonly options: string;
}

/** A pinned network namespace. */
export interface Netns {
  readonly name: string;
  /** What goes into the OCI spec and CNI_NETNS. */
  readonly path: string;
}

export interface NetnsOptions {
  /** Name prefix; crib's namespaces are exactly those with it. Default "crib-". */
  readonly prefix?: string;
  /** The iproute2 binary. Default "ip" from PATH. */
  readonly ip?: string;
}

/** the exit statuses `create`'s shell gives a failed `ip netns add` and `ip link set lo up` (ip's own are 1 and 2) */
const ADD_FAILED = 10;
const LOOPBACK_FAILED = 11;

const loopbackError = (name: string, err: unknown): NetnsError =>
  new NetnsError("internal", `cannot bring up loopback in network namespace ${name}: ${stderrOf(err)}`, { cause: err });

function stderrOf(err: unknown): string {
  const stderr = (err as { stderr?: unknown }).stderr;
  const text = typeof stderr === "string" ? stderr.trim() : "";
  return text || (err instanceof Error ? err.message : String(err));
}

/** True when `path` is a mounted network namespace (not a missing or stale pin file). */
export async function exists(path: string): Promise<boolean> {
  try {
    return (await statfs(path)).type === NSFS_MAGIC;
  } catch {
    return false;
  }
}

export class NetnsManager {
  readonly #prefix: string;
  readonly #ip: string;
  // The first `ip netns add` sets up the /var/run/netns mount; racing first
  // calls can stack bind mounts, so later calls wait for the first.
  #firstAdd: Promise<unknown> | undefined;

  constructor(options: NetnsOptions = {}) {
    this.#prefix = options.prefix ?? DEFAULT_NETNS_PREFIX;
    this.#ip = options.ip ?? "ip";
    if (!/^[A-Za-z0-9_.-]+$/.test(this.#prefix)) throw new Error(`netns prefix "${this.#prefix}" is not a valid file name`);
  }

  nameFor(sandboxId: string): string {
    if (!SAFE_ID.test(sandboxId)) throw new NetnsError("invalid-argument", `sandbox id "${sandboxId}" cannot name a network namespace`);
    // The whole id: no collisions, and a leaked netns names its sandbox.
    return `${this.#prefix}${sandboxId}`;
  }

  pathFor(sandboxId: string): string {
    return join(NETNS_RUN_DIR, this.nameFor(sandboxId));
  }

  /**
   * Creates and pins the sandbox's netns with loopback up. Fails if it already exists.
   * One process (a shell running both `ip` commands) where two would be: on a loaded
   * node every spawn from Node costs a fork of crib's whole address space. `tmpfs`:
   * a tmpfs the same process mounts (the pod's /dev/shm), saving a third spawn.
   */
  async create(sandboxId: string, signal?: AbortSignal, tmpfs?: TmpfsMount): Promise<Netns> {
    const name = this.nameFor(sandboxId);
    const netns = { name, path: join(NETNS_RUN_DIR, name) };
    const mount = tmpfs ? ` || exit ${LOOPBACK_FAILED}; exec mount -t tmpfs -o "$3" shm "$4"` : "";
    const script = `"$1" netns add "$2" || exit ${ADD_FAILED}; ${mount ? "" : "exec "}"$1" -n "$2" link set lo up${mount}`;
    const args = ["-c", script, "sh", this.#ip, name, ...(tmpfs ? [tmpfs.options, tmpfs.dir] : [])];
    await this.#pinning(async () => {
      try {
        await run("sh", args, { ...(signal ? { signal } : {}), group: true });
      } catch (err) {
        if (signal?.aborted) {
          await this.remove(netns).catch(() => {});
          throw signal.reason;
        }
        const code = (err as { code?: unknown }).code;
        if (code === ADD_FAILED) throw this.#addError(sandboxId, name, err);
        await this.remove(netns).catch(() => {});
        if (tmpfs && code !== LOOPBACK_FAILED) {
          throw new NetnsError("internal", `sandbox ${sandboxId}: cannot mount a tmpfs at ${tmpfs.dir}: ${stderrOf(err)}`, { cause: err });
        }
        throw loopbackError(name, err);
      }
    });
    return netns;
  }

  #addError(sandboxId: string, name: string, err: unknown): NetnsError {
    const detail = stderrOf(err);
    const kind: ErrorKind = /File exists/.test(detail) ? "already-exists" : "internal";
    return new NetnsError(kind, `sandbox ${sandboxId}: cannot create network namespace ${name}: ${detail}`, { cause: err });
  }

  /** The first pin sets up the /var/run/netns mount; racing first calls could stack bind mounts. */
  async #pinning(add: () => Promise<void>): Promise<void> {
    if (this.#firstAdd === undefined) {
      const first = add();
      this.#firstAdd = first.catch(() => {});
      await first;
    } else {
      await this.#firstAdd;
      await add();
    }
  }

  /**
   * Unpins a netns given as a Netns, a name or a path under /var/run/netns.
   * Absent is fine. Processes still inside keep the namespace alive.
   */
  async remove(netns: Netns | string, signal?: AbortSignal): Promise<void> {
    const text = typeof netns === "string" ? netns : netns.name;
    let name = text;
    if (text.includes("/")) {
      if (dirname(text) !== NETNS_RUN_DIR && dirname(text) !== "/run/netns") {
        throw new NetnsError("invalid-argument", `network namespace ${text} is not under ${NETNS_RUN_DIR}`);
      }
      name = basename(text);
    }
    const path = join(NETNS_RUN_DIR, name);
    try {
      await lstat(path);
    } catch {
      return;
    }
    try {
      await run(this.#ip, ["netns", "delete", name], signal ? { signal } : {});
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      // Someone else removed it between our look and ip's.
      if (!(await lstat(path).then(() => true, () => false))) return;
      throw new NetnsError("internal", `cannot remove network namespace ${name}: ${stderrOf(err)}`, { cause: err });
    }
  }

  /** crib's pinned namespaces (by prefix), for leak audits. */
  async list(): Promise<Array<Netns & { readonly sandboxId: string }>> {
    let names: string[];
    try {
      names = await readdir(NETNS_RUN_DIR);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    return names
      .filter((n) => n.startsWith(this.#prefix) && n.length > this.#prefix.length)
      .sort()
      .map((name) => ({ name, path: join(NETNS_RUN_DIR, name), sandboxId: name.slice(this.#prefix.length) }));
  }

  /** True when `path` is a mounted network namespace. */
  exists(path: string): Promise<boolean> {
    return exists(path);
  }
}
