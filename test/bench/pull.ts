// pull: a ~100 MB image of 5 layers from a registry on 127.0.0.1, pulled and
// unpacked by crib (PullImage) and by `ctr images pull` in the same run, each
// into a fresh containerd; and how much crib's RSS grows while it pulls.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { RegistryClient } from "../../runtime/image/registry.js";
import { TestContainerd } from "../fixtures/containerd.js";
import { TestCrib } from "../fixtures/crib.js";
import { benchmarkImage } from "../fixtures/image-builder.js";
import { pushImage } from "../fixtures/push.js";
import { startRegistry } from "../fixtures/registry.js";
import { mb, median, rss, sampleRss, timed, type Benchmark, type Row } from "./bench.js";

const run = promisify(execFile);

export const pullBenchmark: Benchmark = {
  name: "pull",
  description: "pull + unpack of a ~100 MB, 5-layer image from a loopback registry: crib vs ctr",
  async run({ runs, log }) {
    const image = await benchmarkImage();
    const bytes = [...image.blobs.values()].reduce((n, b) => n + b.descriptor.size, 0);
    await using registry = await startRegistry();
    const ref = `${registry.host}/bench:1`;
    {
      await using pusher = new RegistryClient();
      await pushImage(pusher, ref, image);
    }
    log(`pushed ${ref}: ${mb(bytes)} MB in ${image.manifest.layers.length} layers`);

    const crib: number[] = [];
    const ctr: number[] = [];
    const growth: number[] = [];
    for (let i = 0; i < runs; i++) {
      {
        const containerd = await TestContainerd.start();
        const c = await TestCrib.start({ containerdAddress: containerd.address, namespace: "bench-crib", config: { log_level: "info" } });
        try {
          const pid = c.pid!;
          const before = await rss(pid);
          const sampler = sampleRss(pid);
          const { ms, value } = await timed(() => c.client.image.PullImage({ image: { image: ref } }, { timeoutMs: 600_000 }));
          const peak = await sampler.stop();
          if (value.image_ref !== image.manifest.config.descriptor.digest) throw new Error(`crib pulled ${value.image_ref}`);
          crib.push(ms);
          growth.push(peak - before);
          log(`run ${i + 1}: crib ${ms.toFixed(0)} ms, RSS ${mb(before)} → peak ${mb(peak)} MB`);
        } finally {
          await c.close();
          await containerd.close();
        }
      }
      {
        const containerd = await TestContainerd.start();
        try {
          const { ms } = await timed(() => run("ctr", ["-a", containerd.address, "-n", "bench-ctr", "images", "pull", "--plain-http", ref], { maxBuffer: 64 << 20 }));
          ctr.push(ms);
          log(`run ${i + 1}: ctr ${ms.toFixed(0)} ms`);
        } finally {
          await containerd.close();
        }
      }
    }
    const name = "pull";
    const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
    const rows: Row[] = [
      { benchmark: name, metric: "image size", value: `${mb(bytes)} MB`, note: `${image.manifest.layers.length} layers, gzip` },
      { benchmark: name, metric: "crib PullImage (median)", value: seconds(median(crib)), note: `min ${seconds(Math.min(...crib))}, ${runs} runs` },
      { benchmark: name, metric: "ctr images pull (median)", value: seconds(median(ctr)), note: `min ${seconds(Math.min(...ctr))}, ${runs} runs` },
      { benchmark: name, metric: "crib / ctr", value: (median(crib) / median(ctr)).toFixed(2), note: "time ratio, medians" },
      { benchmark: name, metric: "crib throughput", value: `${(bytes / (1 << 20) / (median(crib) / 1000)).toFixed(0)} MB/s`, note: "compressed bytes" },
      { benchmark: name, metric: "crib RSS growth (median)", value: `${mb(median(growth))} MB`, note: `max ${mb(Math.max(...growth))} MB; peak VmRSS during the pull minus before` },
    ];
    return rows;
  },
};
