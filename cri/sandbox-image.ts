// Where the sandbox image comes from when it is missing: crib's own pause
// from the local archive (`[sandbox] image_archive`, installed by
// deploy/setup.sh), so that a node needs no registry to run pods; then the
// registry. Importing at the moment the image is missing, rather than once at
// set-up, works whichever containerd crib uses (its own, the system one, a
// configured one) and heals a node where someone removed the image.
import type { Logger } from "pino";
import type { Config } from "./config.js";
import type { Containerd } from "../runtime/containerd/client.js";
import type { Puller } from "./image-lookup.js";
import { archiveExists, archiveImageNames, importArchive } from "../runtime/image/archive.js";
import { findImage, PINNED_LABEL } from "../runtime/image/store.js";

export function sandboxArchiveFirst(config: Config, containerd: Containerd, log: Logger, pull: Puller): Puller {
  const { image, image_archive: archive } = config.sandbox;
  let importing: Promise<void> | undefined;
  const holds = async (ref: string): Promise<boolean> => {
    try {
      if ((await archiveImageNames(archive)).includes(ref)) return true;
      log.warn({ image: ref, archive }, "the sandbox image archive holds another image; pulling the sandbox image");
    } catch (err) {
      log.warn({ image: ref, archive, err: (err as Error).message }, "cannot read the sandbox image archive; pulling the sandbox image");
    }
    return false;
  };
  return async (ref, signal) => {
    if (ref === image && (await archiveExists(archive)) && (await holds(ref))) {
      // concurrent first sandboxes share one import
      importing ??= importArchive({ address: containerd.address, namespace: containerd.namespace, archive })
        .finally(() => { importing = undefined; });
      try {
        await importing;
        if (await findImage(containerd, ref, signal)) {
          // pinned, as a pulled sandbox image is: kubelet's image GC leaves it alone
          await containerd.images.Update({ image: { name: ref, labels: { [PINNED_LABEL]: "pinned" } }, update_mask: { paths: [`labels.${PINNED_LABEL}`] } }, signal);
          log.info({ image: ref, archive }, "imported the sandbox image from its local archive");
          return;
        }
        log.warn({ image: ref, archive }, "the sandbox image is missing after importing its archive; pulling it");
      } catch (err) {
        log.warn({ image: ref, archive, err: (err as Error).message }, "cannot import the sandbox image archive; pulling it");
      }
    }
    await pull(ref, signal);
  };
}
