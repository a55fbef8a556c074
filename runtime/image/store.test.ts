import assert from "node:assert/strict";
import { test } from "node:test";
import type { Containerd } from "../containerd/client.js";
import { MediaType } from "./oci.js";
import { describedTargets, listImages } from "./store.js";

/** A containerd holding `count` single-layer images, answering List and content Read only. */
function fakeContainerd(count: number) {
  const blobs = new Map<string, unknown>();
  const records: Array<{ name: string; labels: Record<string, string>; target: { media_type: string; digest: string; size: string } }> = [];
  for (let i = 0; i < count; i++) {
    const config = `sha256:${"c".repeat(60)}${String(i).padStart(4, "0")}`;
    const manifest = `sha256:${"m".repeat(60)}${String(i).padStart(4, "0")}`;
    blobs.set(config, { architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [`sha256:${"d".repeat(64)}`] } });
    blobs.set(manifest, { schemaVersion: 2, config: { digest: config, size: 10 }, layers: [{ digest: `sha256:${"l".repeat(64)}`, size: 100 }] });
    records.push({ name: `docker.io/library/img-${i}:v1`, labels: {}, target: { media_type: MediaType.OciManifest, digest: manifest, size: "1" } });
  }
  let reads = 0;
  const c = {
    images: { List: async () => ({ images: records }) },
    raw: {
      content: {
        Read: ({ digest }: { digest: string }) => {
          reads++;
          const it = (async function* () { yield { data: Buffer.from(JSON.stringify(blobs.get(digest))) }; })();
          return Object.assign(it, { cancel() {} });
        },
      },
    },
    metadata: () => undefined,
  } as unknown as Containerd;
  return { c, records, reads: () => reads };
}

test("an image's manifest and config are read once, and forgotten when its record is gone", async () => {
  const node = fakeContainerd(50);
  const before = describedTargets();
  assert.equal((await listImages(node.c)).length, 50);
  assert.equal(node.reads(), 100, "manifest and config of each");
  await listImages(node.c);
  assert.equal(node.reads(), 100, "a second listing reads no content");
  assert.equal(describedTargets(), before + 50);
  node.records.splice(10);
  assert.equal((await listImages(node.c)).length, 10);
  assert.equal(describedTargets(), 10, "the 40 removed images' facts are dropped, also any an earlier test left");
});
