// GetContainerEvents, and the hooks that feed it. Each event carries the pod's
// status and its containers' statuses as they were when the event happened,
// which is what kubelet's evented PLEG caches. A sandbox's own events carry the
// sandbox id as container_id, as containerd's do.
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import type { Container } from "./store/containers.js";
import type { Sandbox } from "./store/sandboxes.js";
import { CribError } from "../runtime/errors.js";
import { sandboxStatusOf } from "./sandbox-status.js";
import { containerStatusOf } from "./container-status.js";

export type ContainerEventType = cri.ContainerEventType;
export type ContainerEvent = cri.ContainerEventResponse__Input;

const nowNanos = (): string => (BigInt(Date.now()) * 1_000_000n).toString();

function publish(deps: Deps, type: ContainerEventType, id: string, sandbox: Sandbox | undefined): void {
  if (deps.containerEvents.clients === 0) return;
  try {
    deps.containerEvents.publish({
      container_id: id,
      container_event_type: type,
      created_at: nowNanos(),
      pod_sandbox_status: sandbox ? sandboxStatusOf(sandbox) : null,
      containers_statuses: sandbox ? deps.containers.inSandbox(sandbox.id).map(containerStatusOf) : [],
    });
  } catch (err) {
    deps.log.warn({ err: String(err), container: id.slice(0, 12), type }, "cannot publish a container event");
  }
}

/** An event of container `c`, after its state changed in the store. */
export function containerEvent(deps: Deps, type: ContainerEventType, c: Container): void {
  publish(deps, type, c.id, c.sandboxId ? deps.sandboxes.find(c.sandboxId) : undefined);
}

/** An event of the sandbox itself; for DELETED, `sandbox` is the record just removed. */
export function sandboxEvent(deps: Deps, type: ContainerEventType, sandbox: Sandbox): void {
  publish(deps, type, sandbox.id, sandbox);
}

export async function getContainerEvents(deps: Deps, _req: cri.GetEventsRequest, send: (e: ContainerEvent) => Promise<void>, ctx: CallContext): Promise<void> {
  const subscription = deps.containerEvents.subscribe();
  ctx.log.debug({ clients: deps.containerEvents.clients }, "container events client subscribed");
  try {
    for (;;) {
      const event = await subscription.next(ctx.signal);
      if (event === undefined) break;
      const sent = send(event);
      sent.catch(() => undefined); // a dropped client's pending send fails when its call ends
      await Promise.race([sent, subscription.ended]);
    }
    if (subscription.overflowed) {
      throw new CribError("resource-exhausted", "container events: this client fell too far behind and was dropped; list the containers again and resubscribe");
    }
  } finally {
    subscription.close();
  }
}
