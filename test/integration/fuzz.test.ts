// The bounded part of the CRI fuzzer that runs with every `npm test`: every third
// single-field mutation of every rpc, unary and server-streaming (`npm run fuzz`
// runs them all, then pairs). A call's deadline is two minutes: it catches a
// stall, not a slow node.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { PodEnv } from "../fixtures/pod-env.js";
import { fuzz, singleFieldCases } from "../fuzz/fuzz.js";

const STRIDE = 3;

describe("CRI fuzzer (bounded)", () => {
  let env: PodEnv;
  before(async () => { env = await PodEnv.start(); });
  after(async () => { await env?.close(); });

  const cases = Math.ceil(singleFieldCases() / STRIDE);
  it(`answers ${cases} mutated requests without UNKNOWN, INTERNAL, a hang, a crash, a leak or a stray file`, { timeout: 15 * 60_000 }, async () => {
    const report = await fuzz(env, {
      cases, stride: STRIDE, callTimeoutMs: 120_000, logErrorsFail: false,
      onFailure: (f) => console.log(`fuzz failure: ${f}`), progress: (line) => console.log(`fuzz: ${line}`),
    });
    const codes = JSON.stringify(report.codes);
    assert.equal(report.cases, cases);
    assert.deepEqual(report.failures, [], codes);
    // the sample exercised both sides: bad input refused as such, and what is still valid served
    assert.ok((report.codes["INVALID_ARGUMENT"] ?? 0) > cases / 4, `bad input is refused as such: ${codes}`);
    assert.ok((report.codes["OK"] ?? 0) > cases / 10, `what is still valid is served: ${codes}`);
    assert.ok((report.codes["NOT_FOUND"] ?? 0) < cases / 4, `the cases reached the base pod and container, not NOT_FOUND: ${codes}`);
  });
});
