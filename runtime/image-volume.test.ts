import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { isKind } from "./errors.js";
import { imageVolumeKey, imageVolumeOwner, resolveSubPath, subPathParts } from "./image-volume.js";

const kind = (k: "invalid-argument" | "not-found", message: RegExp) => (err: unknown) => isKind(err, k) && message.test((err as Error).message);

test("a sub path is relative and has no ..", () => {
  assert.deepEqual(subPathParts("", "f"), []);
  assert.deepEqual(subPathParts("etc", "f"), ["etc"]);
  assert.deepEqual(subPathParts("./usr//share/", "f"), ["usr", "share"]);
  assert.throws(() => subPathParts("/etc", "mounts[0].image_sub_path"), kind("invalid-argument", /mounts\[0\]\.image_sub_path "\/etc" must be a relative path/));
  assert.throws(() => subPathParts("..", "f"), kind("invalid-argument", /"\.\." must not contain "\.\."/));
  assert.throws(() => subPathParts("etc/../../x", "f"), kind("invalid-argument", /must not contain/));
  assert.deepEqual(subPathParts("a..b/..c", "f"), ["a..b", "..c"], "dots inside a name are a name");
});

test("image volume snapshot keys name their container", () => {
  assert.equal(imageVolumeOwner(imageVolumeKey("c0ffee", 2)), "c0ffee");
  assert.equal(imageVolumeOwner("c0ffee"), undefined, "a rootfs snapshot");
  assert.equal(imageVolumeOwner("image-volume/c0ffee"), undefined);
});

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), "crib-subpath-"));
  await mkdir(join(root, "etc/ssl"), { recursive: true });
  await writeFile(join(root, "etc/passwd"), "root:x:0:0::/:/bin/sh\n");
  await symlink("/etc", join(root, "abs"));
  await symlink("ssl/../..", join(root, "etc/up"));
  await symlink("../../../../../etc/ssl", join(root, "escape"));
  await symlink("loop", join(root, "loop"));
});
after(async () => { await rm(root, { recursive: true, force: true }); });

test("a sub path resolves inside the image, symlinks as if the image were /", async () => {
  assert.equal(await resolveSubPath(root, "", "f"), root);
  assert.equal(await resolveSubPath(root, "etc/passwd", "f"), join(root, "etc/passwd"));
  assert.equal(await resolveSubPath(root, "abs/ssl", "f"), join(root, "etc/ssl"), "an absolute target starts at the image root");
  assert.equal(await resolveSubPath(root, "etc/up", "f"), root, "ssl/../.. climbs to the root, no further");
  assert.equal(await resolveSubPath(root, "escape", "f"), join(root, "etc/ssl"), "the host's /etc is never reached");
});

test("a missing sub path, or one through a file, is not found; a symlink loop is refused", async () => {
  await assert.rejects(resolveSubPath(root, "not-existing", "mounts[1].image_sub_path"), kind("not-found", /mounts\[1\]\.image_sub_path "not-existing" does not exist in the image/));
  await assert.rejects(resolveSubPath(root, "etc/passwd/x", "f"), kind("not-found", /does not exist/));
  await assert.rejects(resolveSubPath(root, "loop", "f"), kind("invalid-argument", /too many levels of symbolic links/));
});
