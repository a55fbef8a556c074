import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { decodeAny, isEvent, loadContainerd, loadCri, protoSourceDir } from "./load.js";

// RuntimeService in k8s.io/cri-api v0.36.3 has 35 rpcs, ImageService 6.
const upstreamRpcs = { RuntimeService: 35, ImageService: 6 };

function rpcsInSource(service: string): string[] {
  const source = readFileSync(`${protoSourceDir()}cri/api.proto`, "utf8")
    .replace(/\/\/[^\n]*/g, "");
  const body = new RegExp(`service ${service} \\{([^}]*)\\}`).exec(source)?.[1] ?? "";
  return [...body.matchAll(/rpc (\w+)\(/g)].map((m) => m[1] ?? "");
}

test("the CRI services offer every rpc of the CRI v1 API", () => {
  const runtime = loadCri().runtime.v1;
  for (const [name, count] of Object.entries(upstreamRpcs)) {
    const service = name === "RuntimeService" ? runtime.RuntimeService.service : runtime.ImageService.service;
    const loaded = Object.keys(service);
    assert.equal(loaded.length, count, `${name} has ${loaded.length} rpcs, upstream has ${count}`);
    assert.deepEqual(loaded.sort(), rpcsInSource(name).sort(), `${name}: the loaded rpcs differ from proto/cri/api.proto`);
  }
});

test("loading is cached", () => {
  assert.equal(loadCri(), loadCri());
  assert.equal(loadContainerd(), loadContainerd());
});

test("a TaskExit in an event envelope decodes to the typed message", () => {
  const { containerd } = loadContainerd();
  const exit = { container_id: "web", id: "web", pid: 4242, exit_status: 137, exited_at: { seconds: "1700000000", nanos: 5 } };
  const envelope = containerd.services.events.v1.Envelope.deserialize(containerd.services.events.v1.Envelope.serialize({
    namespace: "k8s.io",
    topic: "/tasks/exit",
    event: { type_url: "containerd.events.TaskExit", value: containerd.events.TaskExit.serialize(exit) },
  }));
  assert.ok(envelope.event, "the envelope lost its event");
  const decoded = decodeAny(envelope.event);
  assert.ok(isEvent(decoded, "containerd.events.TaskExit"), `decoded as ${decoded.type}`);
  assert.deepEqual(decoded.value, exit);
});

test("an Any of an unknown type is refused with its type_url", () => {
  assert.throws(() => decodeAny({ type_url: "example.com/Nope", value: Buffer.alloc(0) }), /"example.com\/Nope"/);
});
