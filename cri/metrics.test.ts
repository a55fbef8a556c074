import assert from "node:assert/strict";
import { test } from "node:test";
import { status } from "@grpc/grpc-js";
import { CribMetrics, parseListenAddress } from "./metrics.js";
import { configFromObject } from "./config.js";

test("metrics addresses: host:port, [v6]:port and :port; anything else is refused naming the key", () => {
  assert.deepEqual(parseListenAddress("127.0.0.1:9910"), { host: "127.0.0.1", port: 9910 });
  assert.deepEqual(parseListenAddress("[::1]:9910"), { host: "::1", port: 9910 });
  assert.deepEqual(parseListenAddress(":9910"), { host: "", port: 9910 });
  assert.deepEqual(parseListenAddress("127.0.0.1:0"), { host: "127.0.0.1", port: 0 }, "port 0: an ephemeral port, logged once bound");
  assert.throws(() => parseListenAddress("127.0.0.1:65536"), /"127\.0\.0\.1:65536"/);
  assert.throws(() => configFromObject("c.toml", { metrics: { address: "localhost" } }), /key "metrics\.address"/);
  assert.equal(configFromObject("c.toml", { metrics: { address: "127.0.0.1:9910" } }).metrics.address, "127.0.0.1:9910");
});

test("rpc latency by method, errors by method and code, containers and sandboxes by state at scrape time", async () => {
  const metrics = new CribMetrics({
    containers: () => [{ status: { state: "CONTAINER_RUNNING" } }, { status: { state: "CONTAINER_EXITED" } }] as never,
    sandboxes: () => [{ state: "SANDBOX_READY" }] as never,
    eventClients: () => 2,
  });
  metrics.callDone("RuntimeService/Version", status.OK, 0.002);
  metrics.callDone("RuntimeService/ContainerStatus", status.NOT_FOUND, 0.001);
  metrics.cniDone("ADD", 0.3, true);
  metrics.imagePull({ ok: false });
  metrics.imageBytesDownloaded(1000);
  const text = await metrics.registry.metrics();
  assert.match(text, /^crib_cri_request_duration_seconds_bucket\{le="0\.0025",method="RuntimeService\/Version"\} 1$/m);
  assert.match(text, /^crib_cri_request_errors_total\{method="RuntimeService\/ContainerStatus",code="NOT_FOUND"\} 1$/m);
  assert.doesNotMatch(text, /crib_cri_request_errors_total\{method="RuntimeService\/Version"/);
  assert.match(text, /^crib_containers\{state="running"\} 1$/m);
  assert.match(text, /^crib_containers\{state="created"\} 0$/m);
  assert.match(text, /^crib_sandboxes\{state="notready"\} 0$/m);
  assert.match(text, /^crib_container_event_clients 2$/m);
  assert.match(text, /^crib_cni_operation_duration_seconds_count\{operation="ADD",outcome="ok"\} 1$/m);
  assert.match(text, /^crib_image_pull_failures_total 1$/m);
  assert.match(text, /^crib_image_pull_bytes_total 1000$/m);
});
