// Exec: validates the request against the container and hands out a one-time
// URL on the streaming server, where the client runs the command (cri/streaming-runtime.ts).
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import { required } from "../runtime/errors.js";
import { requireRunning } from "./container-exec-sync.js";

export async function execRpc(deps: Deps, req: cri.ExecRequest, _ctx: CallContext): Promise<cri.ExecResponse__Input> {
  const c = deps.containers.get(required(req.container_id, "container_id"));
  requireRunning(c);
  return { url: deps.streaming.getExecUrl({ containerId: c.id, cmd: req.cmd, tty: req.tty, stdin: req.stdin, stdout: req.stdout, stderr: req.stderr }) };
}
