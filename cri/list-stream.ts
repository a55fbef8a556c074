// The Stream* rpcs (StreamPodSandboxes, StreamContainers, …) are their List
// counterparts split over several responses, so a large node never hits the
// message size limit; each item is sent once.
import type { Deps } from "./deps.js";
import type { CallContext } from "./rpc.js";

const CHUNK = 100;

export function listStream<Req, ListRes, Res>(
  list: (deps: Deps, req: Req, ctx: CallContext) => Promise<ListRes>,
  from: keyof ListRes,
  to: keyof Res,
) {
  return async (deps: Deps, req: Req, send: (res: Res) => Promise<void>, ctx: CallContext): Promise<void> => {
    const items = ((await list(deps, req, ctx))[from] ?? []) as unknown[];
    for (let i = 0; i < items.length; i += CHUNK) {
      ctx.signal.throwIfAborted();
      await send({ [to]: items.slice(i, i + CHUNK) } as Res);
    }
  };
}
