import assert from "node:assert/strict";
import { test } from "node:test";
import { kernelAtLeast, parseRuncFeatures, probeRuncFeatures } from "./runc-features.js";

test("recursive read-only needs runc's rro option and a 5.12 kernel", () => {
  const withRro = JSON.stringify({ ociVersionMax: "1.0.2-dev", mountOptions: ["bind", "rbind", "ro", "rro"] });
  assert.equal(parseRuncFeatures(withRro, "6.1.0-18-amd64").recursiveReadOnly, true);
  assert.equal(parseRuncFeatures(withRro, "5.10.0-28-amd64").recursiveReadOnly, false);
  assert.equal(parseRuncFeatures(JSON.stringify({ mountOptions: ["ro"] }), "6.1.0").recursiveReadOnly, false);
  assert.equal(parseRuncFeatures("{}", "6.1.0").recursiveReadOnly, false);
});

test("kernel releases compare by major and minor", () => {
  assert.equal(kernelAtLeast("5.12.0", 5, 12), true);
  assert.equal(kernelAtLeast("5.4.0-150-generic", 5, 12), false);
  assert.equal(kernelAtLeast("10.0", 5, 12), true);
  assert.equal(kernelAtLeast("garbage", 5, 12), false);
});

test("a runtime binary that is missing supports nothing", async () => {
  assert.deepEqual(await probeRuncFeatures("/nonexistent/runc"), { recursiveReadOnly: false });
});
