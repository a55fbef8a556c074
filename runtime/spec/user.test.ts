import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { LinuxContainerSecurityContext__Input } from "../../proto/gen/cri/runtime/v1/LinuxContainerSecurityContext.js";
import { isKind } from "../errors.js";
import { containerConfig } from "./testing.js";
import { readInRoot, resolveUser } from "./user.js";
import type { UserRequest } from "./user.js";

const passwd = [
  "root:x:0:0:root:/root:/bin/sh",
  "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
  "# a comment",
  "app:x:1000:1000:App:/home/app:/bin/sh",
  "web:x:1001:3000::/srv:/bin/sh",
  "",
].join("\n");
const group = [
  "root:x:0:",
  "daemon:x:1:",
  "app:x:1000:",
  "staff:x:50:app,web",
  "audio:x:29:web",
  "media:x:3000:",
  "",
].join("\n");

let rootfs = "";
let bare = "";

before(async () => {
  rootfs = await mkdtemp(join(tmpdir(), "crib-user-"));
  await mkdir(join(rootfs, "etc"));
  await writeFile(join(rootfs, "etc/passwd"), passwd);
  await writeFile(join(rootfs, "etc/group"), group);
  bare = await mkdtemp(join(tmpdir(), "crib-user-bare-"));
});

after(async () => {
  await rm(rootfs, { recursive: true, force: true });
  await rm(bare, { recursive: true, force: true });
});

const request = (sc: LinuxContainerSecurityContext__Input | null, imageUser = ""): UserRequest => ({
  securityContext: sc === null ? null : (containerConfig({ linux: { security_context: sc } }).linux?.security_context ?? null),
  imageUser,
});
const invalid = (message: RegExp) => (err: unknown) => isKind(err, "invalid-argument") && message.test((err as Error).message);

test("no user anywhere is root, with root's groups", async () => {
  assert.deepEqual(await resolveUser(rootfs, request(null)), { uid: 0, gid: 0, additionalGids: [0], username: "root" });
});

test("the image's User by name takes uid, gid and group memberships from the image", async () => {
  assert.deepEqual(await resolveUser(rootfs, request(null, "web")), { uid: 1001, gid: 3000, additionalGids: [3000, 50, 29], username: "web" });
});

test("the image's User forms uid, uid:gid, name:group and uid:group", async () => {
  assert.deepEqual(await resolveUser(rootfs, request(null, "1000")), { uid: 1000, gid: 1000, additionalGids: [1000, 50], username: "app" });
  assert.deepEqual(await resolveUser(rootfs, request(null, "1000:29")), { uid: 1000, gid: 29, additionalGids: [29, 50], username: "app" });
  assert.deepEqual(await resolveUser(rootfs, request(null, "app:media")), { uid: 1000, gid: 3000, additionalGids: [3000, 50], username: "app" });
  assert.deepEqual(await resolveUser(rootfs, request(null, "4242:staff")), { uid: 4242, gid: 50, additionalGids: [50] });
});

test("an unknown uid runs with gid 0", async () => {
  assert.deepEqual(await resolveUser(rootfs, request(null, "4242")), { uid: 4242, gid: 0, additionalGids: [0] });
});

test("run_as_user overrides the image's User and takes its gid from /etc/passwd", async () => {
  assert.deepEqual(await resolveUser(rootfs, request({ run_as_user: { value: 1001 } }, "app")), {
    uid: 1001, gid: 3000, additionalGids: [3000, 50, 29], username: "web",
  });
});

test("run_as_group overrides the primary group", async () => {
  assert.deepEqual(await resolveUser(rootfs, request({ run_as_user: { value: 1000 }, run_as_group: { value: 2000 } })), {
    uid: 1000, gid: 2000, additionalGids: [2000, 50], username: "app",
  });
});

test("run_as_username resolves in the image", async () => {
  assert.deepEqual(await resolveUser(rootfs, request({ run_as_username: "daemon" })), { uid: 1, gid: 1, additionalGids: [1], username: "daemon" });
  await assert.rejects(resolveUser(rootfs, request({ run_as_username: "ghost" })), invalid(/user "ghost" not found in the image's \/etc\/passwd/));
});

test("supplemental_groups are merged with the memberships, or alone under Strict", async () => {
  assert.deepEqual(await resolveUser(rootfs, request({ run_as_user: { value: 1001 }, supplemental_groups: [4000, 50] })), {
    uid: 1001, gid: 3000, additionalGids: [3000, 50, 29, 4000], username: "web",
  });
  assert.deepEqual(
    await resolveUser(rootfs, request({ run_as_user: { value: 1001 }, supplemental_groups: [4000], supplemental_groups_policy: "Strict" })),
    { uid: 1001, gid: 3000, additionalGids: [3000, 4000], username: "web" },
  );
});

test("a group without a user, or both user forms, is refused", async () => {
  await assert.rejects(resolveUser(rootfs, request({ run_as_group: { value: 5 } })), invalid(/run_as_group \(5\) is set without run_as_user/));
  await assert.rejects(
    resolveUser(rootfs, request({ run_as_user: { value: 5 }, run_as_username: "app" })),
    invalid(/run_as_user \(5\) and run_as_username \("app"\) are both set/),
  );
});

test("an image without /etc/passwd and /etc/group: numbers work, names are an error naming them", async () => {
  assert.deepEqual(await resolveUser(bare, request(null, "1234:5678")), { uid: 1234, gid: 5678, additionalGids: [5678] });
  assert.deepEqual(await resolveUser(bare, request({ run_as_user: { value: 1234 }, supplemental_groups: [9] })), { uid: 1234, gid: 0, additionalGids: [0, 9] });
  await assert.rejects(resolveUser(bare, request(null, "nginx")), invalid(/image user "nginx": user "nginx" cannot be found: the image has no \/etc\/passwd/));
  await assert.rejects(resolveUser(rootfs, request(null, "app:nogroup")), invalid(/group "nogroup" not found in the image's \/etc\/group/));
});

test("an absolute symlink in the image resolves inside the rootfs, not on the host", async () => {
  const root = await mkdtemp(join(tmpdir(), "crib-user-link-"));
  try {
    await mkdir(join(root, "etc"));
    await mkdir(join(root, "data"));
    await writeFile(join(root, "data/passwd"), "linked:x:7:7::/:/bin/sh\n");
    await symlink("/data/passwd", join(root, "etc/passwd"));
    assert.equal(await readInRoot(root, "/etc/passwd"), "linked:x:7:7::/:/bin/sh\n");
    await symlink("/../../../../etc/hostname", join(root, "etc/group"));
    assert.equal(await readInRoot(root, "/etc/group"), undefined, "escaped the rootfs");
    assert.deepEqual(await resolveUser(root, request(null, "linked")), { uid: 7, gid: 7, additionalGids: [7], username: "linked" });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test("a negative run_as_user is refused", async () => {
  await assert.rejects(resolveUser(rootfs, request({ run_as_user: { value: -1 } })), invalid(/run_as_user: -1 is not a valid id/));
});
