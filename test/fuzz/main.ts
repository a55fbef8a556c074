// npm run fuzz [-- --cases N --seed S --out FILE --call-timeout MS --verbose]: the CRI fuzzer
// against a crib of its own on the real stack (a private containerd, CNI bridge and
// crib; needs root). Each failure is printed, and appended to FILE, when it is found,
// so a run that is interrupted still tells what it found; the fixtures kill what they
// started if the run is ended by a signal.
import { appendFileSync, writeFileSync } from "node:fs";
import { PodEnv } from "../fixtures/pod-env.js";
import { fuzz, singleFieldCases } from "./fuzz.js";

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] ?? fallback : fallback;
};

const cases = Number(arg("cases", "1500"));
const seed = Number(arg("seed", "13"));
const callTimeoutMs = Number(arg("call-timeout", "60000"));
const out = arg("out", `/tmp/crib-fuzz-${new Date().toISOString().replace(/[:.]/g, "-")}.failures`);
if (process.getuid?.() !== 0) {
  console.error("the fuzzer runs containerd, runc and CNI plugins: it needs root");
  process.exit(1);
}
writeFileSync(out, "");
console.log(`crib fuzzer: ${cases} cases (${singleFieldCases()} single-field mutations, then pairs), seed ${seed}; failures are written to ${out}`);
const env = await PodEnv.start();
let failed = true;
try {
  const report = await fuzz(env, {
    cases, seed, callTimeoutMs,
    progress: (line) => console.log(line),
    ...(process.argv.includes("--verbose") ? { onAnswer: (line: string) => console.log(line) } : {}),
    onFailure: (line) => { console.log(`FAIL ${line}`); appendFileSync(out, `${line}\n`); },
  });
  console.log(`${report.cases} cases in ${Math.round(report.ms / 1000)} s; answers: ${JSON.stringify(report.codes)}`);
  failed = report.failures.length > 0;
  console.log(failed ? `${report.failures.length} failures (listed above and in ${out})` : "no UNKNOWN or INTERNAL answer, no hang, no crash, no leak, no stray file");
} finally {
  await env.close();
}
process.exit(failed ? 1 : 0);
