// `crib bootstrap`: the cluster side of putting crib on a node, after kubelet
// has been pointed at crib. It waits for kubelet to register the Node, renders
// the CNI host-local ranges from the Node's podCIDRs (with `[cni]
// manage_from_node`), makes sure a RuntimeClass exists for every runtime
// handler crib has, and waits for the Node to turn Ready on crib.
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { ApiException, CoreV1Api, KubeConfig, NodeV1Api, Watch, type V1Node, type V1RuntimeClass } from "@kubernetes/client-node";
import type { Config } from "./config.js";
import { loadNetworkConfig } from "../cni/config.js";
import { DEFAULT_NETWORK_FILE, defaultNetworkConfig, renderHostLocalRanges } from "../cni/pod-cidrs.js";
import { pino } from "pino";
import { writeFileAtomic } from "../runtime/atomic-file.js";

export interface BootstrapOptions {
  config: Config;
  kubeconfig: string;
  nodeName: string;
  /** how long to wait for the Node to register, and then to turn Ready */
  timeoutMs: number;
  /** crib's version: kubelet reports `crib://<version>` */
  version: string;
  /** progress, one line each */
  out: (line: string) => void;
}

/** A step that cannot go on; the message says what failed and what to do. */
export class BootstrapError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "BootstrapError";
  }
}

interface Api {
  kc: KubeConfig;
  kubeconfig: string;
  server: string;
  user: string;
  core: CoreV1Api;
  node: NodeV1Api;
}

interface Access { verb: string; resource: string; name?: string }

const statusMessage = (body: unknown): string => {
  try {
    const status = (typeof body === "string" ? JSON.parse(body) : body) as { message?: string } | undefined;
    return status?.message ?? "";
  } catch {
    return typeof body === "string" ? body : "";
  }
};

const httpCode = (err: unknown): number | undefined =>
  err instanceof ApiException ? err.code : typeof (err as { statusCode?: unknown })?.statusCode === "number" ? (err as { statusCode: number }).statusCode : undefined;

/** The one place API failures become messages: unreachable, unauthorized, forbidden, or what the server said. */
function apiError(api: Api, what: Access, err: unknown): BootstrapError {
  const target = `${what.resource}${what.name ? ` "${what.name}"` : ""}`;
  const code = httpCode(err);
  if (code === undefined) {
    const reason = err instanceof Error ? err.message : String(err);
    return new BootstrapError(`cannot reach the API server at ${api.server} (kubeconfig ${api.kubeconfig}) to ${what.verb} ${target}: ${reason}`, { cause: err });
  }
  const said = err instanceof ApiException ? statusMessage(err.body) : "";
  const detail = said ? `: ${said}` : "";
  if (code === 403) {
    return new BootstrapError(`forbidden: user "${api.user}" of ${api.kubeconfig} may not ${what.verb} ${target}${detail} — grant "${what.verb}" on ${what.resource}, or use a kubeconfig that may (e.g. /etc/kubernetes/admin.conf)`, { cause: err });
  }
  if (code === 401) return new BootstrapError(`unauthorized: the API server at ${api.server} rejected the credentials of ${api.kubeconfig} (${what.verb} ${target})`, { cause: err });
  return new BootstrapError(`the API server answered ${code} to ${what.verb} ${target}${detail}`, { cause: err });
}

function connect(kubeconfig: string): Api {
  const kc = new KubeConfig();
  try {
    kc.loadFromFile(kubeconfig);
  } catch (err) {
    throw new BootstrapError(`cannot load kubeconfig ${kubeconfig}: ${(err as Error).message}`, { cause: err });
  }
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new BootstrapError(`kubeconfig ${kubeconfig} has no current cluster with a server`);
  return { kc, kubeconfig, server, user: kc.getCurrentUser()?.name ?? "(none)", core: kc.makeApiClient(CoreV1Api), node: kc.makeApiClient(NodeV1Api) };
}

const isReady = (node: V1Node): boolean => node.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
const podCidrsOf = (node: V1Node): string[] => node.spec?.podCIDRs?.length ? node.spec.podCIDRs : node.spec?.podCIDR ? [node.spec.podCIDR] : [];

/**
 * Watches Node `name` until `until` holds or the deadline passes; resolves with
 * the node that satisfied it, or undefined and the last one seen. Watches are
 * re-established when the server closes them.
 */
async function watchNode(api: Api, name: string, until: (node: V1Node) => boolean, deadline: number): Promise<{ node: V1Node | undefined; last: V1Node | undefined }> {
  const watch = new Watch(api.kc);
  let last: V1Node | undefined;
  while (Date.now() < deadline) {
    const outcome = await new Promise<{ node?: V1Node; err?: unknown }>((resolve) => {
      let controller: AbortController | undefined;
      let settled = false;
      const finish = (result: { node?: V1Node; err?: unknown }) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        controller?.abort();
        resolve(result);
      };
      const timer = setTimeout(() => finish({}), Math.max(0, deadline - Date.now()));
      watch.watch("/api/v1/nodes", { fieldSelector: `metadata.name=${name}` }, (type, object: V1Node) => {
        if (type !== "ADDED" && type !== "MODIFIED") return;
        last = object;
        if (until(object)) finish({ node: object });
      }, (err: unknown) => finish(err ? { err } : {})).then((c) => {
        controller = c;
        if (settled) c.abort();
      }, (err: unknown) => finish({ err }));
    });
    if (outcome.node) return { node: outcome.node, last };
    const code = httpCode(outcome.err);
    if (code === 401 || code === 403) throw apiError(api, { verb: "watch", resource: "nodes" }, outcome.err);
    if (Date.now() < deadline) await new Promise((r) => setTimeout(r, Math.min(1000, Math.max(0, deadline - Date.now()))));
  }
  return { node: undefined, last };
}

async function waitForNode(api: Api, name: string, timeoutMs: number, out: (line: string) => void): Promise<V1Node> {
  try {
    return await api.core.readNode({ name });
  } catch (err) {
    if (httpCode(err) !== 404) throw apiError(api, { verb: "get", resource: "nodes", name }, err);
  }
  out(`waiting for kubelet to register node "${name}"…`);
  const { node } = await watchNode(api, name, () => true, Date.now() + timeoutMs);
  if (!node) {
    throw new BootstrapError(`node "${name}" is not registered after ${Math.round(timeoutMs / 1000)} s: is kubelet running with --node-name/hostname "${name}" and pointed at crib? (journalctl -u kubelet)`);
  }
  return node;
}

/** Renders the host-local ranges of crib's network config from the pod CIDRs; returns what it did. */
export async function renderNetwork(confDir: string, podCidrs: readonly string[]): Promise<string> {
  const load = await loadNetworkConfig(confDir, pino({ level: "silent" }));
  const file = load.config?.source ?? join(confDir, DEFAULT_NETWORK_FILE);
  const original = load.config ? (JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>) : defaultNetworkConfig();
  let rendered;
  try {
    rendered = renderHostLocalRanges(original, podCidrs);
  } catch (err) {
    throw new BootstrapError(`cannot render the node's pod CIDRs ${podCidrs.join(", ")} into ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (load.config && !rendered.changed) return `CNI: ${file} already has host-local ranges ${rendered.subnets.join(", ")}`;
  await mkdir(confDir, { recursive: true, mode: 0o755 });
  await writeFileAtomic(file, `${JSON.stringify(rendered.config, null, 2)}\n`);
  return `CNI: wrote host-local ranges ${rendered.subnets.join(", ")} into ${file}`;
}

// RuntimeClass names are DNS-1123 subdomains; handlers are DNS-1123 labels.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** Creates a RuntimeClass per handler where none of that name exists; never changes existing ones. */
async function ensureRuntimeClasses(api: Api, handlers: readonly string[], out: (line: string) => void): Promise<string[]> {
  const problems: string[] = [];
  for (const handler of handlers) {
    if (!DNS_LABEL.test(handler)) {
      out(`RuntimeClass: handler "${handler}" is not a DNS label, so no RuntimeClass can name it; skipped`);
      continue;
    }
    try {
      const existing = await api.node.readRuntimeClass({ name: handler });
      out(existing.handler === handler
        ? `RuntimeClass "${handler}" exists`
        : `RuntimeClass "${handler}" exists with handler "${existing.handler}"; left alone`);
      continue;
    } catch (err) {
      if (httpCode(err) !== 404) {
        problems.push(apiError(api, { verb: "get", resource: "runtimeclasses.node.k8s.io", name: handler }, err).message);
        continue;
      }
    }
    const body: V1RuntimeClass = {
      apiVersion: "node.k8s.io/v1", kind: "RuntimeClass",
      metadata: { name: handler, labels: { "app.kubernetes.io/managed-by": "crib" } },
      handler,
    };
    try {
      await api.node.createRuntimeClass({ body });
      out(`RuntimeClass "${handler}" created (handler ${handler})`);
    } catch (err) {
      if (httpCode(err) === 409) out(`RuntimeClass "${handler}" exists`);
      else problems.push(apiError(api, { verb: "create", resource: "runtimeclasses.node.k8s.io", name: handler }, err).message);
    }
  }
  return problems;
}

/**
 * Runs the steps in order. Throws BootstrapError when a step cannot go on
 * (no API server, no Node); returns the problems of steps that failed
 * without stopping the others (a RuntimeClass not allowed, not Ready in time).
 */
export async function bootstrap(o: BootstrapOptions): Promise<{ problems: string[] }> {
  const api = connect(o.kubeconfig);
  const problems: string[] = [];
  const name = o.nodeName;

  let node = await waitForNode(api, name, o.timeoutMs, o.out);
  o.out(`node "${name}" is registered${node.status?.nodeInfo?.kubeletVersion ? ` (kubelet ${node.status.nodeInfo.kubeletVersion})` : ""}`);

  if (o.config.cni.manage_from_node) {
    if (podCidrsOf(node).length === 0) {
      o.out(`waiting for node "${name}" to be given pod CIDRs…`);
      const { node: withCidrs } = await watchNode(api, name, (n) => podCidrsOf(n).length > 0, Date.now() + o.timeoutMs);
      if (!withCidrs) {
        throw new BootstrapError(`node "${name}" has no spec.podCIDRs after ${Math.round(o.timeoutMs / 1000)} s: the cluster does not allocate node CIDRs (kube-controller-manager --allocate-node-cidrs), so set [cni] manage_from_node = false and configure the network yourself`);
      }
      node = withCidrs;
    }
    o.out(await renderNetwork(o.config.cni.conf_dir, podCidrsOf(node)));
  } else {
    const cidrs = podCidrsOf(node);
    o.out(`CNI: [cni] manage_from_node is false; left ${o.config.cni.conf_dir} alone${cidrs.length ? ` (the node's pod CIDRs: ${cidrs.join(", ")})` : ""}`);
  }

  problems.push(...(await ensureRuntimeClasses(api, Object.keys(o.config.runtimes), o.out)));

  const want = `crib://${o.version}`;
  const onCrib = (n: V1Node) => isReady(n) && n.status?.nodeInfo?.containerRuntimeVersion === want;
  if (!onCrib(node)) o.out(`waiting for node "${name}" to be Ready on ${want}…`);
  const { node: ready, last } = onCrib(node) ? { node, last: node } : await watchNode(api, name, (n) => onCrib(n) || isReady(n), Date.now() + o.timeoutMs);
  const runtime = (ready ?? last)?.status?.nodeInfo?.containerRuntimeVersion || "(none reported)";
  if (ready && runtime === want) {
    o.out(`node "${name}" is Ready; kubelet runs ${runtime}`);
  } else if (ready) {
    problems.push(`node "${name}" is Ready but kubelet reports runtime ${runtime}, not ${want}: set containerRuntimeEndpoint: unix://${o.config.listen} in kubelet's config (deploy/kubelet/) and restart kubelet`);
  } else {
    const condition = last?.status?.conditions?.find((c) => c.type === "Ready");
    const why = condition ? `Ready=${condition.status}${condition.reason ? ` (${condition.reason}${condition.message ? `: ${condition.message}` : ""})` : ""}` : "no Ready condition";
    problems.push(`node "${name}" is not Ready after ${Math.round(o.timeoutMs / 1000)} s: ${why}; runtime ${runtime}`);
  }
  return { problems };
}
