import type * as cri from "../proto/gen/cri/types.js";
import type { Deps } from "./deps.js";
import { cgroupDriver } from "./config.js";

export async function runtimeConfig(deps: Deps, _req: cri.RuntimeConfigRequest): Promise<cri.RuntimeConfigResponse__Input> {
  return { linux: { cgroup_driver: cgroupDriver(deps.config) === "systemd" ? "SYSTEMD" : "CGROUPFS" } };
}
