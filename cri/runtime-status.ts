import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import { cgroupDriver } from "./config.js";

const PROBE_TIMEOUT_MS = 2000;
const FRESH_MS = 5000;

/**
 * Whether containerd answers, without a round trip per Status: while crib's
 * event stream to containerd is up and containerd answered a probe within
 * FRESH_MS, it is up; an older answer is still given while a new probe runs
 * in the background (it catches a containerd that hangs with the stream open).
 * With the stream down, or the last probe failed, Status probes and waits.
 */
class ContainerdHealth {
  #last: { at: number; up: boolean } | undefined;
  #probe: Promise<boolean> | undefined;

  async up(deps: Deps, signal: () => AbortSignal): Promise<boolean> {
    const last = this.#last;
    if (deps.events.connection !== undefined && last?.up) {
      if (Date.now() - last.at >= FRESH_MS) void this.#probeOnce(deps);
      return true;
    }
    return this.#probeOnce(deps, signal());
  }

  #probeOnce(deps: Deps, signal?: AbortSignal): Promise<boolean> {
    this.#probe ??= deps.containerd.ping(AbortSignal.timeout(PROBE_TIMEOUT_MS)).then((up) => {
      this.#last = { at: Date.now(), up };
      this.#probe = undefined;
      return up;
    });
    if (!signal) return this.#probe;
    // the caller may give up early; the probe's answer is kept for the next one
    return Promise.race([this.#probe, new Promise<boolean>((resolve) => signal.addEventListener("abort", () => resolve(false), { once: true }))]);
  }
}

const health = new WeakMap<Deps["containerd"], ContainerdHealth>();

export async function runtimeStatus(deps: Deps, req: cri.StatusRequest, ctx: CallContext): Promise<cri.StatusResponse__Input> {
  let h = health.get(deps.containerd);
  if (!h) health.set(deps.containerd, (h = new ContainerdHealth()));
  const runtimeUp = await h.up(deps, () => ctx.signal);
  const network = deps.network.status();
  const conditions: cri.RuntimeCondition__Input[] = [
    !runtimeUp
      ? { type: "RuntimeReady", status: false, reason: "ContainerdUnreachable", message: `containerd at ${deps.containerd.address} does not answer` }
      : !deps.recovery.ready
        ? { type: "RuntimeReady", status: false, reason: "CribReconciling", message: `crib is reconciling its state with containerd${deps.recovery.error ? `: ${deps.recovery.error}` : ""}` }
        : { type: "RuntimeReady", status: true },
    network.ready
      ? { type: "NetworkReady", status: true }
      : { type: "NetworkReady", status: false, reason: network.reason, message: network.message },
  ];
  const features = (name: string): cri.RuntimeHandlerFeatures__Input => ({
    recursive_read_only_mounts: deps.runtimeFeatures.get(name)?.recursiveReadOnly ?? false,
    user_namespaces: false,
  });
  // "" is the default handler, as kubelet names it
  const handlers = ["", ...Object.keys(deps.config.runtimes)].map((name) => ({ name, features: features(name || deps.config.default_runtime) }));
  const res: cri.StatusResponse__Input = {
    status: { conditions },
    runtime_handlers: handlers,
    features: { supplemental_groups_policy: true, user_namespaces_host_network: false },
  };
  if (req.verbose) {
    res.info = {
      config: JSON.stringify(redacted(deps.config)),
      containerd: JSON.stringify({ address: deps.containerd.address, namespace: deps.containerd.namespace, ready: runtimeUp }),
      network: JSON.stringify(network),
      cni: JSON.stringify({ ...deps.network.describe?.(), podCidrs: deps.podCidrs.current }),
      cgroupDriver: cgroupDriver(deps.config),
    };
  }
  return res;
}

// Registry credentials stay out of `crictl info`.
function redacted(config: Deps["config"]): unknown {
  const hosts = Object.fromEntries(Object.entries(config.registry.hosts).map(([host, h]) =>
    [host, { ...h, password: h.password ? "<redacted>" : "", auth: h.auth ? "<redacted>" : "", identity_token: h.identity_token ? "<redacted>" : "" }]));
  return { ...config, registry: { ...config.registry, hosts } };
}
