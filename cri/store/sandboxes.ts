// In-memory cache of crib's sandboxes. The durable record is the pause
// container in containerd (metadata in its "crib.sandbox.v1" extension);
// cri/recover.ts rebuilds this store from it at start.
import type * as cri from "../../proto/gen/cri/types.js";
import { invalidArgument, notFound } from "../../runtime/errors.js";

export const SANDBOX_EXTENSION = "crib.sandbox.v1";
export const KIND_LABEL = "crib.kind";

/** What survives a restart, in the pause container's record. */
export interface SandboxMeta {
  id: string;
  config: cri.PodSandboxConfig;
  /** creation time, Unix nanoseconds */
  createdAt: string;
  runtimeHandler: string;
  /** "" for a host-network pod */
  netnsPath: string;
  /** primary first */
  ips: string[];
  /** hosts, resolv.conf, hostname */
  dir: string;
  /** "" when the pod uses the node's IPC */
  shmDir: string;
  image: string;
}

export interface Sandbox extends SandboxMeta {
  state: "SANDBOX_READY" | "SANDBOX_NOTREADY";
  pid: number;
  /** the network was torn down (StopPodSandbox ran CNI DEL) */
  networkDown: boolean;
}

export const sandboxNameKey = (m: cri.PodSandboxMetadata): string => `${m.name}_${m.namespace}_${m.uid}_${m.attempt}`;

export class SandboxStore {
  readonly #byId = new Map<string, Sandbox>();
  readonly #names = new Map<string, string>();

  /** Reserves a name for an id; returns the id holding it when taken. */
  reserve(name: string, id: string): string | undefined {
    const holder = this.#names.get(name);
    if (holder !== undefined) return holder;
    this.#names.set(name, id);
    return undefined;
  }

  release(name: string, id: string): void {
    if (this.#names.get(name) === id) this.#names.delete(name);
  }

  holder(name: string): string | undefined {
    return this.#names.get(name);
  }

  add(sandbox: Sandbox): void {
    this.#byId.set(sandbox.id, sandbox);
    if (sandbox.config.metadata) this.#names.set(sandboxNameKey(sandbox.config.metadata), sandbox.id);
  }

  delete(id: string): void {
    const s = this.#byId.get(id);
    this.#byId.delete(id);
    if (s?.config.metadata) this.release(sandboxNameKey(s.config.metadata), id);
  }

  list(): Sandbox[] {
    return [...this.#byId.values()];
  }

  /** By full id or unique prefix; undefined when none. */
  find(idOrPrefix: string): Sandbox | undefined {
    if (!idOrPrefix) throw invalidArgument("pod_sandbox_id is required");
    const exact = this.#byId.get(idOrPrefix);
    if (exact) return exact;
    const matches = [...this.#byId.keys()].filter((id) => id.startsWith(idOrPrefix));
    if (matches.length > 1) throw invalidArgument(`pod sandbox id prefix "${idOrPrefix}" is ambiguous (${matches.length} sandboxes)`);
    return matches[0] === undefined ? undefined : this.#byId.get(matches[0]);
  }

  get(idOrPrefix: string): Sandbox {
    const s = this.find(idOrPrefix);
    if (!s) throw notFound(`pod sandbox "${idOrPrefix}" not found`);
    return s;
  }
}
