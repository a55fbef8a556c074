// PortForward: checks the pod sandbox is ready and hands out a one-time URL on
// the streaming server; connections go to 127.0.0.1:<port> in the pod's network
// namespace (runtime/port-dial.ts).
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import { failedPrecondition, required } from "../runtime/errors.js";

export async function portForwardRpc(deps: Deps, req: cri.PortForwardRequest, _ctx: CallContext): Promise<cri.PortForwardResponse__Input> {
  const sandbox = deps.sandboxes.get(required(req.pod_sandbox_id, "pod_sandbox_id"));
  if (sandbox.state !== "SANDBOX_READY") throw failedPrecondition(`pod sandbox ${sandbox.id} is not ready`);
  return { url: deps.streaming.getPortForwardUrl({ podSandboxId: sandbox.id, ports: req.port }) };
}
