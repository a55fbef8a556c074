// streaming: what kubectl exec and port-forward cost through crib's streaming
// server. Exec round trip = the Exec rpc plus a SPDY session running `echo x`
// to its status (ExecSync alongside, as the floor). Port-forward throughput =
// a 100 MB GET from busybox httpd in a pod, over SPDY and WebSocket, through the
// nsenter+socat helper, and from a host-network pod (no helper); the same GET
// straight to the pod IP is the baseline.
import { connect } from "node:net";
import type { Duplex, Readable } from "node:stream";
import { PodEnv } from "../fixtures/pod-env.js";
import { execSpdy, SpdyPortForwardClient, WsPortForwardClient } from "../fixtures/stream-clients.js";
import { median, timed, type Benchmark, type Row } from "./bench.js";
import { portOf } from "../fixtures/ports.js";

const BIG_MB = 100;
const GET = "GET /big HTTP/1.0\r\n\r\n";

/** Bytes a stream carries until it ends. */
function count(stream: Readable): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0;
    stream.on("data", (c: Buffer) => (n += c.length));
    stream.once("end", () => resolve(n));
    stream.once("close", () => resolve(n));
    stream.once("error", reject);
  });
}

async function get(data: Duplex): Promise<number> {
  const bytes = count(data);
  data.write(GET);
  return bytes;
}


const percentile = (xs: readonly number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};

export const streamingBenchmark: Benchmark = {
  name: "streaming",
  description: `exec round trip through the streaming server, port-forward throughput (${BIG_MB} MB GET)`,
  async run({ runs, log }) {
    const env = await PodEnv.start({ config: { log_level: "info" } });
    try {
      const pod = await env.runPod("bench");
      const c = await env.runContainer(pod, "httpd", { command: ["/bin/httpd", "-f", "-p", "8080", "-h", "/srv"] });
      const dd = await env.client.runtime.Exec({ container_id: c, cmd: ["/bin/dd", "if=/dev/zero", "of=/srv/big", "bs=1M", `count=${BIG_MB}`], stdout: true, stderr: true });
      if ((await execSpdy(dd.url)).status?.status !== "Success") throw new Error("cannot write /srv/big in the pod");
      const ip = (await env.client.runtime.PodSandboxStatus({ pod_sandbox_id: pod.id })).status?.network?.ip ?? "";
      // The same server in a host-network pod: port forward dials it without the nsenter+socat helper.
      const hostPod = await env.runPod("bench-host", { linux: { security_context: { namespace_options: { network: "NODE" } } } });
      const hc = await env.runContainer(hostPod, "httpd", { command: ["/bin/httpd", "-f", "-p", "127.0.0.1:0", "-h", "/srv"] });
      const hostPort = await portOf(await env.pidOf(hc), "httpd in the host-network pod");
      const hdd = await env.client.runtime.Exec({ container_id: hc, cmd: ["/bin/dd", "if=/dev/zero", "of=/srv/big", "bs=1M", `count=${BIG_MB}`], stdout: true, stderr: true });
      if ((await execSpdy(hdd.url)).status?.status !== "Success") throw new Error("cannot write /srv/big in the host-network pod");

      const rounds = Math.max(50, runs * 20);
      const exec: number[] = [];
      const execSync: number[] = [];
      for (let i = 0; i < rounds + 5; i++) {
        const viaStream = await timed(async () => {
          const { url } = await env.client.runtime.Exec({ container_id: c, cmd: ["/bin/echo", "x"], stdout: true, stderr: true });
          const result = await execSpdy(url);
          if (result.status?.status !== "Success") throw new Error(`exec: ${result.error}`);
        });
        const viaSync = await timed(() => env.client.runtime.ExecSync({ container_id: c, cmd: ["/bin/echo", "x"], timeout: 10 }));
        if (i < 5) continue; // warm-up
        exec.push(viaStream.ms);
        execSync.push(viaSync.ms);
      }
      log(`exec round trip p50 ${median(exec).toFixed(1)} ms (ExecSync ${median(execSync).toFixed(1)} ms), ${rounds} rounds`);

      const spdy: number[] = [];
      const spdyHost: number[] = [];
      const ws: number[] = [];
      const direct: number[] = [];
      const mbps = (bytes: number, ms: number): number => bytes / (1 << 20) / (ms / 1000);
      for (let i = 0; i < runs; i++) {
        {
          const { url } = await env.client.runtime.PortForward({ pod_sandbox_id: pod.id, port: [] });
          const client = await SpdyPortForwardClient.connect(url);
          try {
            const { ms, value } = await timed(async () => get((await client.dial(8080)).data));
            spdy.push(mbps(value, ms));
          } finally {
            client.destroy();
          }
        }
        {
          const { url } = await env.client.runtime.PortForward({ pod_sandbox_id: hostPod.id, port: [] });
          const client = await SpdyPortForwardClient.connect(url);
          try {
            const { ms, value } = await timed(async () => get((await client.dial(hostPort)).data));
            spdyHost.push(mbps(value, ms));
          } finally {
            client.destroy();
          }
        }
        {
          const { url } = await env.client.runtime.PortForward({ pod_sandbox_id: pod.id, port: [8080] });
          const { ms, value } = await timed(async () => {
            const client = await WsPortForwardClient.connect(url, 1);
            const conn = client.connections[0];
            if (conn === undefined) throw new Error("no WebSocket connection");
            return get(conn.data);
          });
          ws.push(mbps(value, ms));
        }
        {
          const { ms, value } = await timed(async () => get(connect({ host: ip, port: 8080 })));
          direct.push(mbps(value, ms));
        }
        log(`run ${i + 1}: SPDY ${spdy.at(-1)?.toFixed(0)} MB/s (host-network pod ${spdyHost.at(-1)?.toFixed(0)} MB/s), WebSocket ${ws.at(-1)?.toFixed(0)} MB/s, direct ${direct.at(-1)?.toFixed(0)} MB/s`);
      }

      const name = "streaming";
      const ms = (x: number) => `${x.toFixed(1)} ms`;
      const rate = (xs: number[]) => `${median(xs).toFixed(0)} MB/s`;
      const rows: Row[] = [
        { benchmark: name, metric: "exec round trip p50", value: ms(median(exec)), note: `p90 ${ms(percentile(exec, 90))}; Exec rpc + SPDY session of echo x, ${rounds} rounds` },
        { benchmark: name, metric: "ExecSync round trip p50", value: ms(median(execSync)), note: `p90 ${ms(percentile(execSync, 90))}; the same command without streaming` },
        { benchmark: name, metric: `port-forward ${BIG_MB} MB, SPDY`, value: rate(spdy), note: `median of ${runs}; min ${Math.min(...spdy).toFixed(0)} MB/s` },
        { benchmark: name, metric: `port-forward ${BIG_MB} MB, SPDY, host net`, value: rate(spdyHost), note: "host-network pod: dialed directly, no nsenter+socat helper" },
        { benchmark: name, metric: `port-forward ${BIG_MB} MB, WebSocket`, value: rate(ws), note: `median of ${runs}; min ${Math.min(...ws).toFixed(0)} MB/s` },
        { benchmark: name, metric: `pod IP directly, ${BIG_MB} MB`, value: rate(direct), note: "baseline: no streaming server, no helper" },
      ];
      return rows;
    } finally {
      await env.close();
    }
  },
};
