// PullImage: pull with the request's credentials; the answer is the image ID
// (its config digest). Concurrent pulls of one image share one download.
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import { required } from "../runtime/errors.js";

export async function pullImage(deps: Deps, req: cri.PullImageRequest, ctx: CallContext): Promise<cri.PullImageResponse__Input> {
  const ref = required(req.image?.image, "image.image");
  const started = process.hrtime.bigint();
  const pulled = await deps.imageStore.writing(() => deps.puller.pull(ref, { auth: req.auth ?? undefined, signal: ctx.signal })).catch((err: unknown) => {
    deps.metrics.imagePull({ ok: false });
    throw err;
  });
  deps.metrics.imagePull({ ok: true, seconds: Number(process.hrtime.bigint() - started) / 1e9 });
  ctx.log.debug({ image: ref, id: pulled.id, records: pulled.names }, "pulled");
  return { image_ref: pulled.id };
}
