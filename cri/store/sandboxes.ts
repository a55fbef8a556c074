// In-memory cache of crib's sandboxes. The durable record is the pause
// container in containerd (metadata in its "crib.sandbox.v1" extension);
// cri/recover.ts rebuilds this store from it at start.
import type * as cri from "../../proto/gen/cri/types.js";
import { NamedStore } from "./named-store.js";

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
  /** why it is NOTREADY, or why its state is not known yet (verbose status info) */
  reason?: string;
  /** the pause's shim, read before the pause is killed, to end the shim if containerd leaves it behind */
  shimPid?: number;
}

export const sandboxNameKey = (m: cri.PodSandboxMetadata): string => `${m.name}_${m.namespace}_${m.uid}_${m.attempt}`;

export class SandboxStore extends NamedStore<Sandbox> {
  constructor() {
    super("pod sandbox", "pod_sandbox_id", (s) => (s.config.metadata ? sandboxNameKey(s.config.metadata) : undefined));
  }
}
