// npm run fuzz [-- --cases N --seed S]: the CRI fuzzer against a crib of its own
// on the real stack (a private containerd, CNI bridge and crib; needs root).
import { PodEnv } from "../fixtures/pod-env.js";
import { fuzz, singleFieldCases } from "./fuzz.js";

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};

const cases = arg("cases", 1500);
const seed = arg("seed", 13);
if (process.getuid?.() !== 0) {
  console.error("the fuzzer runs containerd, runc and CNI plugins: it needs root");
  process.exit(1);
}
console.log(`crib fuzzer: ${cases} cases (${singleFieldCases()} single-field mutations, then pairs), seed ${seed}`);
const env = await PodEnv.start();
let failed = true;
try {
  const report = await fuzz(env, { cases, seed, progress: (line) => console.log(line) });
  console.log(`${report.cases} cases in ${Math.round(report.ms / 1000)} s; answers: ${JSON.stringify(report.codes)}`);
  for (const f of report.failures) console.log(`FAIL ${f}`);
  failed = report.failures.length > 0;
  console.log(failed ? `${report.failures.length} failures` : "no UNKNOWN or INTERNAL answer, no hang, no crash, no leak, no stray file");
} finally {
  await env.close();
}
process.exit(failed ? 1 : 0);
