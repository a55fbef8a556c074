import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import type { Sandbox } from "./store/sandboxes.js";
import { required } from "../runtime/errors.js";
import { RUNC_V2, SNAPSHOTTER, specOf } from "../runtime/containerd/tasks.js";

export function sandboxNamespaces(sandbox: Sandbox): cri.NamespaceOption__Input {
  const o = sandbox.config.linux?.security_context?.namespace_options;
  return { network: o?.network ?? "POD", pid: o?.pid ?? "POD", ipc: o?.ipc ?? "POD", target_id: o?.target_id ?? "" };
}

/** The status as PodSandboxStatus (not verbose) and the container events report it. */
export function sandboxStatusOf(sandbox: Sandbox): cri.PodSandboxStatus__Input {
  const [ip = "", ...more] = sandbox.networkDown ? [] : sandbox.ips;
  return {
    id: sandbox.id,
    metadata: sandbox.config.metadata,
    state: sandbox.state,
    created_at: sandbox.createdAt,
    network: { ip, additional_ips: more.map((x) => ({ ip: x })) },
    linux: { namespaces: { options: sandboxNamespaces(sandbox) } },
    labels: sandbox.config.labels,
    annotations: sandbox.config.annotations,
    runtime_handler: sandbox.runtimeHandler,
  };
}

export async function podSandboxStatus(deps: Deps, req: cri.PodSandboxStatusRequest, ctx: CallContext): Promise<cri.PodSandboxStatusResponse__Input> {
  const sandbox = deps.sandboxes.get(required(req.pod_sandbox_id, "pod_sandbox_id"));
  const res: cri.PodSandboxStatusResponse__Input = { status: sandboxStatusOf(sandbox) };
  if (req.verbose) {
    const cni = await deps.cni.cached(sandbox.id).catch(() => undefined);
    res.info = {
      info: JSON.stringify({
        pid: sandbox.pid, netnsPath: sandbox.netnsPath, netNamespaceClosed: sandbox.networkDown, image: sandbox.image,
        ...(sandbox.reason ? { reason: sandbox.reason } : {}),
        snapshotKey: sandbox.id, snapshotter: SNAPSHOTTER, runtimeHandler: sandbox.runtimeHandler, runtimeType: RUNC_V2,
        cniResult: cni ?? null, config: sandbox.config, files: { dir: sandbox.dir, shm: sandbox.shmDir },
        runtimeSpec: (await specOf(deps.containerd, sandbox.id, ctx.signal)) ?? null,
      }),
    };
  }
  return res;
}
