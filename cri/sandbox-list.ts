import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import type { Sandbox } from "./store/sandboxes.js";
import { matchesLabels } from "./labels.js";
import { newestFirstOf } from "./container-status.js";
import { criMessage } from "../proto/load.js";
import { EncodedItems, repeated, type Encoded } from "../proto/encoded.js";

/** A sandbox as ListPodSandbox lists it. */
export const sandboxSummary = (s: Sandbox): cri.PodSandbox__Input => ({
  id: s.id, metadata: s.config.metadata, state: s.state, created_at: s.createdAt,
  labels: s.config.labels, annotations: s.config.annotations, runtime_handler: s.runtimeHandler,
});

// what the summary shows of a sandbox that can change in place
const summaries = new EncodedItems(criMessage<cri.PodSandbox__Input>("runtime.v1.PodSandbox"), sandboxSummary,
  (s) => [s.config, s.state, s.runtimeHandler, s.createdAt]);
const LIST_FIELD = criMessage("runtime.v1.ListPodSandboxResponse").field("items");

function selectSandboxes(deps: Deps, req: cri.ListPodSandboxRequest): readonly Sandbox[] {
  const f = req.filter;
  const all = newestFirstOf(deps.sandboxes.all());
  if (!f?.id && !f?.state && Object.keys(f?.label_selector ?? {}).length === 0) return all;
  return all.filter((s) => (!f?.id || s.id.startsWith(f.id))
    && (!f?.state || s.state === f.state.state)
    && matchesLabels(s.config.labels, f?.label_selector));
}

/** ListPodSandbox as StreamPodSandboxes sends it, in parts. */
export async function listPodSandbox(deps: Deps, req: cri.ListPodSandboxRequest, _ctx: CallContext): Promise<cri.ListPodSandboxResponse__Input> {
  return { items: selectSandboxes(deps, req).map(sandboxSummary) };
}

export async function listPodSandboxRpc(deps: Deps, req: cri.ListPodSandboxRequest, _ctx: CallContext): Promise<Encoded<cri.ListPodSandboxResponse__Input>> {
  return repeated(LIST_FIELD, selectSandboxes(deps, req).map((s) => summaries.bytes(s)));
}
