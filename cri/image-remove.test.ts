import assert from "node:assert/strict";
import { test } from "node:test";
import type { StoredImage } from "../runtime/image/store.js";
import { recordsToRemove } from "./image-remove.js";
import { imageUser } from "./image-status.js";

const D = `sha256:${"d".repeat(64)}`;
const image = (names: string[]): StoredImage => ({
  id: `sha256:${"c".repeat(64)}`,
  names,
  repoTags: names.filter((n) => !n.includes("@")),
  repoDigests: names.filter((n) => n.includes("@")),
  manifestDigest: D,
  chainId: D,
  config: { architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } },
  size: 1,
  pinned: false,
});

test("removing one of two tags of a repository keeps the other tag and the digest record", () => {
  const i = image(["r.io/app:1", "r.io/app:2", `r.io/app@${D}`]);
  assert.deepEqual(recordsToRemove(i, "r.io/app:1"), ["r.io/app:1"]);
});

test("removing the last tag takes the digest records with it", () => {
  const i = image(["r.io/app:1", `r.io/app@${D}`]);
  assert.deepEqual(recordsToRemove(i, "r.io/app:1"), ["r.io/app:1", `r.io/app@${D}`]);
});

test("removing the last tag of one repository keeps another repository's records", () => {
  const i = image(["r.io/app:1", `r.io/app@${D}`, "r.io/other:1", `r.io/other@${D}`]);
  assert.deepEqual(recordsToRemove(i, "r.io/app:1"), ["r.io/app:1", `r.io/app@${D}`]);
});

test("removing by ID, short ID or digest takes every record", () => {
  const names = ["r.io/app:1", "r.io/app:2", `r.io/app@${D}`];
  const i = image(names);
  assert.deepEqual(recordsToRemove(i, i.id), names);
  assert.deepEqual(recordsToRemove(i, "cccccccccccc"), names);
  assert.deepEqual(recordsToRemove(i, `r.io/app@${D}`), names);
});

test("an untagged name means :latest, as docker and containerd read it", () => {
  const i = image(["docker.io/library/busybox:latest", "docker.io/library/busybox:1"]);
  assert.deepEqual(recordsToRemove(i, "busybox"), ["docker.io/library/busybox:latest"]);
});

test("the image user becomes a uid when numeric, else a username; the group is dropped", () => {
  assert.deepEqual(imageUser(undefined), { username: "" });
  assert.deepEqual(imageUser(""), { username: "" });
  assert.deepEqual(imageUser("app"), { username: "app" });
  assert.deepEqual(imageUser("app:staff"), { username: "app" });
  assert.deepEqual(imageUser("1000"), { uid: 1000, username: "" });
  assert.deepEqual(imageUser("1000:2000"), { uid: 1000, username: "" });
  assert.deepEqual(imageUser("0"), { uid: 0, username: "" });
});
