import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import { matchesLabels } from "./labels.js";

export async function listPodSandbox(deps: Deps, req: cri.ListPodSandboxRequest, _ctx: CallContext): Promise<cri.ListPodSandboxResponse__Input> {
  const f = req.filter;
  const items = deps.sandboxes.list()
    .filter((s) => !f?.id || s.id.startsWith(f.id))
    .filter((s) => !f?.state || s.state === f.state.state)
    .filter((s) => matchesLabels(s.config.labels, f?.label_selector))
    .sort((a, b) => (BigInt(b.createdAt) > BigInt(a.createdAt) ? 1 : -1))
    .map((s): cri.PodSandbox__Input => ({
      id: s.id, metadata: s.config.metadata, state: s.state, created_at: s.createdAt,
      labels: s.config.labels, annotations: s.config.annotations, runtime_handler: s.runtimeHandler,
    }));
  return { items };
}
