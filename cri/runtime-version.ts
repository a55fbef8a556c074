import type * as cri from "../proto/gen/cri/types.js";
import type { Deps } from "./deps.js";

export async function version(deps: Deps, _req: cri.VersionRequest): Promise<cri.VersionResponse__Input> {
  return { version: "0.1.0", runtime_name: "crib", runtime_version: deps.version, runtime_api_version: "v1" };
}
