import assert from "node:assert/strict";
import { test } from "node:test";
import { startFailure } from "./start-failure.js";

const runc = (tail: string) => new Error(`containerd tasks.Create: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: ${tail}: unknown`);

test("runc's words for a program that is not there, not executable, or a process that ended before its start", () => {
  assert.deepEqual(startFailure(runc('exec: "3600": executable file not found in $PATH')), { kind: "not found", program: "3600" });
  assert.deepEqual(startFailure(runc('exec: "/bin/sleep\\nx": stat /bin/sleep\nx: no such file or directory')), { kind: "not found", program: "/bin/sleep\nx" });
  assert.deepEqual(startFailure(new Error('exec failed: unable to start container process: exec: "/etc": is a directory: unknown')), { kind: "not executable", program: "/etc" });
  assert.deepEqual(startFailure(new Error("containerd tasks.Start: cannot start a stopped process: unknown")), { kind: "ended before start" });
  assert.deepEqual(startFailure(runc("error during container init: error setting cgroup config for procHooks process: unable to set memory limit to 2097152 (current usage: 2478080, peak usage: 2777088)")),
    { kind: "memory limit below usage", limit: 2097152, usage: 2478080 });
  // a missing mount source is not a missing program
  assert.equal(startFailure(runc('error during container init: error mounting "/x" to rootfs at "/data": stat /x: no such file or directory')), undefined);
  assert.equal(startFailure(new Error("containerd tasks.Create: context deadline exceeded")), undefined);
});
