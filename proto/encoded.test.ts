import assert from "node:assert/strict";
import { test } from "node:test";
import type * as cri from "./gen/cri/types.js";
import { criMessage, loadCri } from "./load.js";
import { Encoded, EncodedItems, lengthDelimited, passingEncoded, repeated } from "./encoded.js";

const runtime = () => loadCri().runtime.v1.RuntimeService.service;

const container = (i: number, labels: Record<string, string> = {}): cri.Container__Input => ({
  id: `${i}`.repeat(64).slice(0, 64), pod_sandbox_id: "p".repeat(64), metadata: { name: `c${i}`, attempt: i },
  image: { image: "docker.io/library/busybox:1.36", annotations: {}, user_specified_image: "busybox", runtime_handler: "" },
  image_ref: "sha256:" + "a".repeat(64), image_id: "sha256:" + "b".repeat(64),
  state: i % 2 ? "CONTAINER_RUNNING" : "CONTAINER_EXITED", created_at: String(1_700_000_000_000_000_000n + BigInt(i)),
  labels: { "io.kubernetes.pod.name": `pod-${i}`, ...labels }, annotations: { "io.kubernetes.container.hash": "abc" },
});

test("a list made of its items' encodings decodes as the list encoded at once", () => {
  const def = runtime().ListContainers;
  const items = Array.from({ length: 300 }, (_, i) => container(i, i === 7 ? { long: "x".repeat(300) } : {}));
  const codec = criMessage<cri.Container__Input>("runtime.v1.Container");
  const parts = repeated<cri.ListContainersResponse__Input>(criMessage("runtime.v1.ListContainersResponse").field("containers"), items.map((c) => codec.encode(c)));
  assert.deepEqual(def.responseDeserialize(parts.bytes), def.responseDeserialize(def.responseSerialize({ containers: items })));
  assert.deepEqual(def.responseDeserialize(repeated(1, []).bytes), def.responseDeserialize(def.responseSerialize({ containers: [] })));
});

test("a status reply wrapping a kept message decodes as the reply encoded at once", () => {
  const def = runtime().ContainerStatus;
  const status: cri.ContainerStatus__Input = { id: "x", state: "CONTAINER_RUNNING", exit_code: 137, reason: "OOMKilled", started_at: "12", log_path: "/l" };
  const bytes = criMessage<cri.ContainerStatus__Input>("runtime.v1.ContainerStatus").encode(status);
  const reply = lengthDelimited<cri.ContainerStatusResponse__Input>([[criMessage("runtime.v1.ContainerStatusResponse").field("status"), bytes]]);
  assert.deepEqual(def.responseDeserialize(reply.bytes), def.responseDeserialize(def.responseSerialize({ status })));
});

test("the service sends Encoded replies as they are and serializes the rest", () => {
  const service = passingEncoded(runtime());
  const bytes = Buffer.from([0x0a, 0x01, 0x31]);
  const serialize = service.Version.responseSerialize as (value: unknown) => Buffer;
  assert.equal(serialize(new Encoded(bytes)), bytes);
  const v = { version: "0.1.0", runtime_name: "crib", runtime_version: "1", runtime_api_version: "v1" };
  assert.deepEqual(service.Version.responseSerialize(v), runtime().Version.responseSerialize(v));
  assert.equal(service.Version.path, runtime().Version.path);
});

test("an item is encoded again when what its message shows of it changed, and only then", () => {
  let encodings = 0;
  const codec = { encode: (s: { state: string }) => (encodings++, Buffer.from(s.state)) };
  const items = new EncodedItems(codec, (x: { state: string }) => x, (x) => [x.state]);
  const c = { state: "CONTAINER_CREATED" };
  assert.equal(items.bytes(c).toString(), "CONTAINER_CREATED");
  items.bytes(c);
  assert.equal(encodings, 1);
  c.state = "CONTAINER_RUNNING";
  assert.equal(items.bytes(c).toString(), "CONTAINER_RUNNING");
  assert.equal(encodings, 2);
  assert.equal(items.bytes({ state: "CONTAINER_RUNNING" }).toString(), "CONTAINER_RUNNING", "another item has its own encoding");
  assert.equal(encodings, 3);
});
