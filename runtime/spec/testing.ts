// Fixtures for the spec tests: CRI messages as grpc-js would hand them to crib
// (every field present, defaults filled in) and a typical node.
import { loadCri } from "../../proto/load.js";
import type { ContainerConfig, ContainerConfig__Input } from "../../proto/gen/cri/runtime/v1/ContainerConfig.js";
import type { PodSandboxConfig, PodSandboxConfig__Input } from "../../proto/gen/cri/runtime/v1/PodSandboxConfig.js";
import { defaultCapabilities } from "./capabilities.js";
import type { ContainerSpecInput } from "./container.js";
import type { HostFacts } from "./host.js";
import type { SandboxSpecInput } from "./sandbox.js";

/** Round-trips a message through protobuf so that it looks exactly like a received one. */
function received<I, O>(name: "ContainerConfig" | "PodSandboxConfig", message: I): O {
  const type = loadCri().runtime.v1[name] as unknown as { serialize(m: I): Buffer; deserialize(b: Buffer): O };
  return type.deserialize(type.serialize(message));
}

export const containerConfig = (config: ContainerConfig__Input = {}): ContainerConfig =>
  received<ContainerConfig__Input, ContainerConfig>("ContainerConfig", { metadata: { name: "web" }, ...config });

export const sandboxConfig = (config: PodSandboxConfig__Input = {}): PodSandboxConfig =>
  received<PodSandboxConfig__Input, PodSandboxConfig>("PodSandboxConfig", {
    metadata: { name: "nginx", namespace: "default", uid: "pod-uid-1" },
    hostname: "nginx",
    log_directory: "/var/log/pods/default_nginx_pod-uid-1",
    linux: { cgroup_parent: "/kubepods/besteffort/podpod-uid-1" },
    ...config,
  });

/** cgroup v1 with cgroupfs, like the test machine; crib holds every capability but CAP_SYS_RESOURCE. */
export function host(facts: Partial<HostFacts> = {}): HostFacts {
  return {
    cgroupV2: false,
    systemdCgroup: false,
    minOomScoreAdj: 0,
    swapAccounting: true,
    hugetlb: true,
    capabilities: [...defaultCapabilities, "CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_TIME"],
    arch: "x64",
    nodeHostname: "node-1",
    apparmor: { enabled: false },
    ...facts,
  };
}

export const sandboxId = "5a4db0f0c4e0";
export const containerId = "c0ffee00c0de";
export const pausePid = 4242;

export function containerInput(
  config: ContainerConfig__Input = {},
  overrides: Partial<Omit<ContainerSpecInput, "config" | "sandbox">> & { sandbox?: PodSandboxConfig__Input } = {},
): ContainerSpecInput {
  const { sandbox, ...rest } = overrides;
  return {
    id: containerId,
    config: containerConfig(config),
    sandbox: {
      id: sandboxId,
      config: sandboxConfig(sandbox),
      pid: pausePid,
      netnsPath: "/var/run/netns/cni-1234",
      files: {
        hostsPath: `/var/lib/crib/sandboxes/${sandboxId}/hosts`,
        resolvConfPath: `/var/lib/crib/sandboxes/${sandboxId}/resolv.conf`,
        hostnamePath: `/var/lib/crib/sandboxes/${sandboxId}/hostname`,
        shmPath: `/run/crib/sandboxes/${sandboxId}/shm`,
      },
    },
    image: { name: "docker.io/library/nginx:1.25", config: { Entrypoint: ["/docker-entrypoint.sh"], Cmd: ["nginx", "-g", "daemon off;"] } },
    rootfs: "",
    user: { uid: 0, gid: 0, additionalGids: [0] },
    host: host(),
    devices: [],
    hostDevices: [],
    ...rest,
  };
}

export function sandboxInput(config: PodSandboxConfig__Input = {}, overrides: Partial<Omit<SandboxSpecInput, "config">> = {}): SandboxSpecInput {
  return {
    id: sandboxId,
    config: sandboxConfig(config),
    netnsPath: "/var/run/netns/cni-1234",
    image: { config: { Entrypoint: ["/pause"] } },
    rootfs: "",
    host: host(),
    ...overrides,
  };
}
