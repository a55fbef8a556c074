import { Server, ServerCredentials, credentials } from "@grpc/grpc-js";
import { createServer } from "node:net";
import { rmSync } from "node:fs";
import { loadCri } from "/work/wt/authority/dist/proto/load.js";
import { Duplex } from "node:stream";
import { AuthorityStream, serveConnection } from "/work/wt/authority/dist/cri/h2-authority.js";
const v1 = loadCri().runtime.v1;
const impl = { Version: (call, cb) => cb(null, { version: "0.1.0", runtime_name: "crib", runtime_version: "0.1", runtime_api_version: "v1" }),
  ListContainers: (call, cb) => cb(null, { containers: Array.from({ length: 50 }, (_, i) => ({ id: "c" + i, pod_sandbox_id: "p", metadata: { name: "n" + i, attempt: 0 }, image: { image: "busybox" }, image_ref: "sha256:abc", state: "CONTAINER_RUNNING", created_at: "1", labels: { a: "b" }, annotations: {} })) }) };
class Pass extends Duplex { constructor(s) { super(); this.s = s; s.on("data", (c) => { if (!this.push(c)) s.pause(); }); s.once("end", () => this.push(null)); s.once("close", () => this.destroy()); }
  _read() { this.s.resume(); } _write(c, e, cb) { this.s.write(c, cb); } _final(cb) { this.s.end(cb); } _destroy(e, cb) { this.s.destroy(); cb(e); } }
async function start(mode) {
  const path = `/tmp/authority/lat-${mode}.sock`;
  rmSync(path, { force: true });
  const server = new Server();
  server.addService(v1.RuntimeService.service, impl);
  if (mode === "bind") await new Promise((r, j) => server.bindAsync(`unix://${path}`, ServerCredentials.createInsecure(), (e) => (e ? j(e) : r())));
  else { const inj = server.createConnectionInjector(ServerCredentials.createInsecure()); const l = createServer((s) => mode === "hybrid" ? serveConnection(s, (c) => inj.injectConnection(c)) : inj.injectConnection(mode === "pass" ? new Pass(s) : mode === "hybrid" ? (serveConnection(s, (c) => inj.injectConnection(c)), undefined) : new AuthorityStream(s))); await new Promise((r) => l.listen(path, r)); }
  const client = new v1.RuntimeService(`unix://${path}`, credentials.createInsecure());
  return (m) => new Promise((r, j) => client[m]({}, (e, x) => (e ? j(e) : r(x))));
}
const modes = { bind: await start("bind"), stream: await start("stream"), pass: await start("pass"), hybrid: await start("hybrid") };
for (const m of ["Version", "ListContainers"]) {
  const t = { bind: [], stream: [], pass: [], hybrid: [] }, cpu = { bind: 0, stream: 0, pass: 0, hybrid: 0 };
  for (let round = 0; round < 30; round++) for (const mode of round % 2 ? ["stream", "hybrid", "pass", "bind"] : ["bind", "pass", "hybrid", "stream"]) {
    const call = modes[mode];
    for (let i = 0; i < 20; i++) await call(m);
    const c0 = process.cpuUsage();
    for (let i = 0; i < 200; i++) { const s = process.hrtime.bigint(); await call(m); t[mode].push(Number(process.hrtime.bigint() - s) / 1e3); }
    const c = process.cpuUsage(c0); cpu[mode] += c.user + c.system;
  }
  for (const mode of ["bind", "hybrid", "pass", "stream"]) { const a = t[mode].sort((x, y) => x - y); console.log(m, mode, "p50", a[a.length >> 1].toFixed(0), "us", "cpu/call", (cpu[mode] / a.length).toFixed(0), "us"); }
}
process.exit(0);
