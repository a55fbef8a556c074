import assert from "node:assert/strict";
import { test } from "node:test";
import { MAX_DETAILS, toServiceError } from "./errors.js";
import { invalidArgument } from "../runtime/errors.js";

test("a status message is cut to a size every client takes, and says how much was cut", () => {
  // a grpc-js client hangs its channel on a grpc-message trailer of ~80 kB
  const long = toServiceError(invalidArgument(`x: ${"y".repeat(100_000)}`));
  assert.equal(long.code, 3);
  assert.ok(long.details.length <= MAX_DETAILS, `${long.details.length} characters`);
  assert.match(long.details, /^x: y+… \(\d+ more characters\)$/);
  assert.equal(toServiceError(invalidArgument("short: \"v\" is bad")).details, "short: \"v\" is bad");
  assert.ok(toServiceError(new Error("z".repeat(10_000))).details.length <= MAX_DETAILS);
});
