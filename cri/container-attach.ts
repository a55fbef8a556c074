// Attach: validates the request against the container (running; a terminal
// exactly when it has one; stdin only when it was created with stdin) and hands
// out a one-time URL on the streaming server.
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import { required } from "../runtime/errors.js";
import { checkAttach } from "./streaming-runtime.js";

export async function attachRpc(deps: Deps, req: cri.AttachRequest, _ctx: CallContext): Promise<cri.AttachResponse__Input> {
  const c = deps.containers.get(required(req.container_id, "container_id"));
  checkAttach(c, req);
  return { url: deps.streaming.getAttachUrl({ containerId: c.id, tty: req.tty, stdin: req.stdin, stdout: req.stdout, stderr: req.stderr }) };
}
