import { test } from "node:test";
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import type { Containerd } from "./client.js";
import { ContainerdError } from "./errors.js";
import { deleteTask } from "./tasks.js";

/** A containerd whose Delete fails with `err`, and whose Get then finds the task (`stillThere`) or not. */
function fake(err: ContainerdError, stillThere: boolean): { c: Containerd; deletes: () => number } {
  let deletes = 0;
  const c = {
    tasks: {
      Delete: async () => { deletes++; throw err; },
      Get: async () => {
        if (stillThere) return { process: { pid: 7, status: "STOPPED", exit_status: 0, exited_at: null } };
        throw new ContainerdError(status.NOT_FOUND, "tasks.Get", "no running task found");
      },
    },
  } as unknown as Containerd;
  return { c, deletes: () => deletes };
}

const closed = new ContainerdError(status.UNKNOWN, "tasks.Delete", "ttrpc: closed");

test("a delete the shim answered by going away is done once the task is gone", async () => {
  const { c, deletes } = fake(closed, false);
  await deleteTask(c, "a");
  assert.equal(deletes(), 1);
});

test("a failed delete of a task that is still there fails", async () => {
  const { c } = fake(closed, true);
  await assert.rejects(deleteTask(c, "b"), /ttrpc: closed/);
});

test("NOT_FOUND is a done delete; two deletes at once share one call", async () => {
  const { c, deletes } = fake(new ContainerdError(status.NOT_FOUND, "tasks.Delete", "not found"), true);
  await Promise.all([deleteTask(c, "c"), deleteTask(c, "c")]);
  assert.equal(deletes(), 1);
});
