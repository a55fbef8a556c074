// crib's benchmarks: `npm run bench [name…]`. Each benchmark sets up what it
// needs (a registry, a fresh containerd per run, crib as kubelet sees it),
// measures, and returns rows; the table at the end has every figure and ratio.
//   BENCH_RUNS=5 npm run bench pull
import type { Benchmark, Row } from "./bench.js";
import { logsBenchmark } from "./logs.js";
import { pullBenchmark } from "./pull.js";
import { streamingBenchmark } from "./streaming.js";
import { lifecycleBenchmark } from "./lifecycle.js";
import { containerBenchmark, execSyncBenchmark, rssLoggingBenchmark, sandboxBenchmark } from "./cri-compare.js";
import { rpcBenchmark, rssBenchmark } from "./read-path.js";

const benchmarks: Benchmark[] = [pullBenchmark, streamingBenchmark, sandboxBenchmark, containerBenchmark, execSyncBenchmark, rpcBenchmark, rssBenchmark, rssLoggingBenchmark, logsBenchmark, lifecycleBenchmark];

function table(rows: Row[]): string {
  const header: Row = { benchmark: "benchmark", metric: "metric", value: "value", note: "note" };
  const all = [header, ...rows];
  const width = (k: keyof Row) => Math.max(...all.map((r) => (r[k] ?? "").length));
  const [b, m, v] = [width("benchmark"), width("metric"), width("value")];
  const line = (r: Row) => `${r.benchmark.padEnd(b)}  ${r.metric.padEnd(m)}  ${r.value.padStart(v)}  ${r.note ?? ""}`.trimEnd();
  return [line(header), `${"-".repeat(b)}  ${"-".repeat(m)}  ${"-".repeat(v)}  ----`, ...rows.map(line)].join("\n");
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("benchmarks need root (they run containerd)");
  const wanted = process.argv.slice(2).filter((a) => !a.startsWith("--")); // --flags are the benchmarks' own
  const chosen = wanted.length === 0 ? benchmarks : benchmarks.filter((b) => wanted.includes(b.name));
  if (chosen.length === 0) throw new Error(`no benchmark named ${wanted.join(", ")}; there are: ${benchmarks.map((b) => b.name).join(", ")}`);
  const runs = Number(process.env["BENCH_RUNS"] ?? 3);
  const rows: Row[] = [];
  for (const b of chosen) {
    const log = (line: string): void => void process.stderr.write(`[${b.name}] ${line}\n`);
    log(`${b.description} (${runs} runs)`);
    rows.push(...(await b.run({ runs, log })));
  }
  process.stdout.write(`${table(rows)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
