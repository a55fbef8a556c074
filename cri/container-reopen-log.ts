// ReopenContainerLog: kubelet rotated the log file; continue in a new file at the same path.
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import { failedPrecondition, required } from "../runtime/errors.js";

export async function reopenContainerLog(deps: Deps, req: cri.ReopenContainerLogRequest, _ctx: CallContext): Promise<cri.ReopenContainerLogResponse__Input> {
  const c = deps.containers.get(required(req.container_id, "container_id"));
  if (c.status.state !== "CONTAINER_RUNNING") throw failedPrecondition(`container ${c.id} is not running`);
  await deps.io.get(c.id)?.reopenLog();
  return {};
}
