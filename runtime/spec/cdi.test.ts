import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { pino } from "pino";
import { isKind } from "../errors.js";
import { CdiRegistry } from "../cdi-registry.js";
import {
  cdiEditsFor,
  indexCdiSpecs,
  parseCdiSpec,
  parseQualifiedName,
  requestedCdiDevices,
  resolveCdiNode,
  withCdiEdits,
  type CdiResolution,
  type CdiSpec,
  type DeviceEdits,
  type SpecWithHooks,
} from "./cdi.js";
import { buildContainerSpec } from "./container.js";
import { containerConfig, containerInput } from "./testing.js";
import type { LinuxDevice } from "./types.js";

const invalid = (message: RegExp) => (err: unknown) => isKind(err, "invalid-argument") && message.test((err as Error).message);
const specError = (message: RegExp) => (err: unknown) => err instanceof Error && err.name === "CdiSpecError" && message.test(err.message);

const gpuSpec = (overrides: Record<string, unknown> = {}) => ({
  cdiVersion: "0.6.0",
  kind: "vendor.example/gpu",
  containerEdits: { env: ["GPU_DRIVER=1"] },
  devices: [
    { name: "0", containerEdits: { deviceNodes: [{ path: "/dev/gpu0", hostPath: "/dev/zero" }], env: ["GPU=0"] } },
    { name: "1", containerEdits: { deviceNodes: [{ path: "/dev/gpu1", hostPath: "/dev/null" }], env: ["GPU=1"] } },
  ],
  ...overrides,
});
const json = (file: string, value: unknown): CdiSpec => parseCdiSpec(file, JSON.stringify(value));
const search = { dirs: ["/etc/cdi", "/var/run/cdi"], skipped: [] };

test("a JSON spec gives its kind, its own edits and each device's", () => {
  const spec = json("/etc/cdi/gpu.json", gpuSpec());
  assert.equal(spec.kind, "vendor.example/gpu");
  assert.deepEqual(spec.edits.env, ["GPU_DRIVER=1"]);
  assert.deepEqual([...spec.devices.keys()], ["0", "1"]);
  assert.deepEqual(spec.devices.get("0")?.deviceNodes, [{ path: "/dev/gpu0", hostPath: "/dev/zero" }]);
});

test("a YAML spec reads as the Go library reads it: 0666 is octal, additionalGIDs and additionalGids alike", () => {
  const yaml = [
    'cdiVersion: "0.7.0"',
    "kind: vendor.example/fpga",
    "devices:",
    "  - name: card-a",
    "    containerEdits:",
    "      deviceNodes:",
    "        - path: /dev/fpga0",
    "          type: c",
    "          major: 240",
    "          minor: 1",
    "          fileMode: 0666",
    "          permissions: rw",
    "      additionalGIDs: [44]",
    "      hooks:",
    "        - hookName: createContainer",
    "          path: /usr/bin/fpga-hook",
    "          args: [fpga-hook, setup]",
    "          timeout: 5",
    "      mounts:",
    "        - hostPath: /opt/fpga/lib",
    "          containerPath: /usr/lib/fpga",
    "          options: [ro, rbind]",
  ].join("\n");
  for (const file of ["/etc/cdi/fpga.yaml", "/etc/cdi/fpga.yml"]) {
    const edits = parseCdiSpec(file, yaml).devices.get("card-a")!;
    assert.deepEqual(edits.deviceNodes, [{ path: "/dev/fpga0", type: "c", major: 240, minor: 1, fileMode: 0o666, permissions: "rw" }]);
    assert.deepEqual(edits.additionalGids, [44]);
    assert.deepEqual(edits.hooks, [{ hookName: "createContainer", path: "/usr/bin/fpga-hook", args: ["fpga-hook", "setup"], timeout: 5 }]);
    assert.deepEqual(edits.mounts, [{ hostPath: "/opt/fpga/lib", containerPath: "/usr/lib/fpga", options: ["ro", "rbind"] }]);
  }
  const camel = json("/etc/cdi/x.json", gpuSpec({ cdiVersion: "0.7.0", containerEdits: { additionalGids: [7] } }));
  assert.deepEqual(camel.edits.additionalGids, [7]);
});

test("an invalid spec is refused naming the file and the field", () => {
  const file = "/etc/cdi/bad.json";
  assert.throws(() => parseCdiSpec(file, "{ not json"), specError(/bad\.json: not valid JSON/));
  assert.throws(() => parseCdiSpec("/etc/cdi/bad.yaml", "kind: [unclosed"), specError(/bad\.yaml: not valid YAML/));
  assert.throws(() => json(file, gpuSpec({ cdiVersion: "9.9.9" })), specError(/cdiVersion: "9.9.9" is not a CDI version/));
  assert.throws(() => json(file, gpuSpec({ cdiVersion: undefined })), specError(/cdiVersion: is required/));
  assert.throws(() => json(file, gpuSpec({ kind: "gpu" })), specError(/kind: "gpu" is not vendor\/class/));
  assert.throws(() => json(file, gpuSpec({ kind: "vendor.com/foo/bar" })), specError(/kind: "vendor.com\/foo\/bar"/));
  assert.throws(() => json(file, gpuSpec({ devices: [] })), specError(/devices: at least one device/));
  assert.throws(() => json(file, gpuSpec({ devices: [{ name: "-x", containerEdits: { env: ["A=1"] } }] })), specError(/devices\[0\]\.name: "-x" is not a valid device name/));
  assert.throws(() => json(file, gpuSpec({ devices: [{ name: "a", containerEdits: { env: ["A=1"] } }, { name: "a", containerEdits: { env: ["A=1"] } }] })), specError(/defined twice/));
  assert.throws(() => json(file, gpuSpec({ devices: [{ name: "a" }] })), specError(/device "a" has no edits/));
  assert.throws(() => json(file, gpuSpec({ containerEdits: { env: ["NOEQUALS"] } })), specError(/containerEdits\.env\[0\]: expected NAME=value/));
  assert.throws(() => json(file, gpuSpec({ containerEdits: { deviceNode: [] } })), specError(/containerEdits\.deviceNode: unknown field/));
  assert.throws(() => json(file, gpuSpec({ containerEdits: { hooks: [{ hookName: "prestop", path: "/bin/x" }] } })), specError(/hooks\[0\]\.hookName: "prestop"/));
  assert.throws(() => json(file, gpuSpec({ containerEdits: { deviceNodes: [{ path: "/dev/x", permissions: "rx" }] } })), specError(/permissions: "rx"/));
  assert.throws(() => json(file, gpuSpec({ containerEdits: { deviceNodes: [{ path: "/dev/x", major: -1 }] } })), specError(/deviceNodes\[0\]\.major: expected an integer/));
  // a device name starting with a digit (and hostPath) came with 0.5.0, additional groups with 0.7.0
  assert.throws(() => json(file, gpuSpec({ cdiVersion: "0.4.0", containerEdits: {} })), specError(/"0.4.0" is too old .* need 0.5.0/));
  assert.throws(() => json(file, gpuSpec({ containerEdits: { additionalGids: [5] } })), specError(/"0.6.0" is too old .* need 0.7.0/));
});

test("qualified names are vendor/class=name", () => {
  assert.deepEqual(parseQualifiedName("vendor.example/gpu=0"), { kind: "vendor.example/gpu", name: "0" });
  assert.deepEqual(parseQualifiedName("nvidia.com/gpu=GPU-1a2b:mig-3"), { kind: "nvidia.com/gpu", name: "GPU-1a2b:mig-3" });
  for (const bad of ["gpu0", "vendor.example/gpu", "vendor.example=0", "/dev/gpu0", "vendor.example/gpu=", "vendor/gpu/x=0"]) {
    assert.equal(parseQualifiedName(bad), undefined, bad);
  }
});

test("devices come from CDI_devices and then the cdi.k8s.io/ annotations, each once", () => {
  const config = containerConfig({
    CDI_devices: [{ name: "vendor.example/gpu=0" }, { name: "vendor.example/gpu=1" }],
    annotations: {
      "cdi.k8s.io/b-plugin": "vendor.example/gpu=1, vendor.example/nic=eth1",
      "cdi.k8s.io/a-plugin": "vendor.example/fpga=a",
      "other.io/x": "vendor.example/gpu=9",
    },
  });
  assert.deepEqual(requestedCdiDevices(config), ["vendor.example/gpu=0", "vendor.example/gpu=1", "vendor.example/fpga=a", "vendor.example/nic=eth1"]);
  assert.deepEqual(requestedCdiDevices(containerConfig()), []);
});

test("a later directory overrides an earlier one; two files of one directory conflict", () => {
  const early = json("/etc/cdi/gpu.json", gpuSpec());
  const late = json("/var/run/cdi/gpu.json", gpuSpec({ devices: [{ name: "0", containerEdits: { env: ["GPU=late"] } }] }));
  const index = indexCdiSpecs([{ spec: early, priority: 0 }, { spec: late, priority: 1 }]);
  assert.deepEqual(index.devices.get("vendor.example/gpu=0")?.edits.env, ["GPU=late"]);
  assert.deepEqual(index.devices.get("vendor.example/gpu=1")?.edits.env, ["GPU=1"], "devices the later file leaves out stay");

  const twin = json("/etc/cdi/gpu-twin.json", gpuSpec({ devices: [{ name: "0", containerEdits: { env: ["GPU=twin"] } }] }));
  const clash = indexCdiSpecs([{ spec: early, priority: 0 }, { spec: twin, priority: 0 }]);
  assert.equal(clash.devices.get("vendor.example/gpu=0"), undefined);
  assert.throws(() => cdiEditsFor(clash, ["vendor.example/gpu=0"], search), invalid(/more than one spec file.*gpu\.json, \/etc\/cdi\/gpu-twin\.json/));
  const settled = indexCdiSpecs([{ spec: early, priority: 0 }, { spec: twin, priority: 0 }, { spec: late, priority: 1 }]);
  assert.deepEqual(settled.devices.get("vendor.example/gpu=0")?.edits.env, ["GPU=late"], "a later directory settles a conflict");
});

test("each device's edits follow its spec's own edits, which come once", () => {
  const index = indexCdiSpecs([{ spec: json("/etc/cdi/gpu.json", gpuSpec()), priority: 0 }]);
  const edits = cdiEditsFor(index, ["vendor.example/gpu=1", "vendor.example/gpu=0"], search);
  assert.deepEqual(edits.map((e) => [e.device, e.env]), [
    ["vendor.example/gpu=1", ["GPU_DRIVER=1"]],
    ["vendor.example/gpu=1", ["GPU=1"]],
    ["vendor.example/gpu=0", ["GPU=0"]],
  ]);
});

test("an unknown or malformed device is INVALID_ARGUMENT naming it and where crib looked", () => {
  const index = indexCdiSpecs([{ spec: json("/etc/cdi/gpu.json", gpuSpec()), priority: 0 }]);
  assert.throws(
    () => cdiEditsFor(index, ["vendor.example/gpu=7"], { dirs: ["/etc/cdi"], skipped: ["/etc/cdi/broken.yaml"] }),
    invalid(/unknown CDI device "vendor\.example\/gpu=7": no CDI spec in \/etc\/cdi defines it; invalid spec files skipped: \/etc\/cdi\/broken\.yaml/),
  );
  assert.throws(() => cdiEditsFor(index, ["gpu0"], search), invalid(/CDI device "gpu0" is not a fully-qualified name/));
});

const zero: LinuxDevice = { path: "/dev/gpu0", type: "c", major: 1, minor: 5, fileMode: 0o666, uid: 0, gid: 0 };

test("a device node is completed from the host's node; what the spec gives stays", () => {
  const filled = resolveCdiNode("v/c=0", { path: "/dev/gpu0", hostPath: "/dev/zero" }, zero);
  assert.deepEqual(filled, { device: { path: "/dev/gpu0", type: "c", major: 1, minor: 5, fileMode: 0o666 }, access: "rwm", hostOwner: { uid: 0, gid: 0 } });
  const given = resolveCdiNode("v/c=0", { path: "/dev/x", type: "b", major: 8, minor: 1, fileMode: 0o600, uid: 5, permissions: "none" }, undefined);
  assert.deepEqual(given, { device: { path: "/dev/x", type: "b", major: 8, minor: 1, fileMode: 0o600, uid: 5 }, access: "" });
  assert.throws(() => resolveCdiNode("v/c=0", { path: "/dev/gone" }, undefined), invalid(/CDI device "v\/c=0": device node "\/dev\/gone": host device "\/dev\/gone" is missing/));
  assert.throws(() => resolveCdiNode("v/c=0", { path: "/dev/gpu0", type: "b" }, zero), invalid(/type "b" but host device "\/dev\/gpu0" is "c"/));
});

const resolution = (...edits: Array<Partial<DeviceEdits> & { nodes?: CdiResolution["edits"][number]["deviceNodes"] }>): CdiResolution => ({
  devices: ["vendor.example/gpu=0"],
  edits: edits.map(({ nodes, ...e }) => ({
    device: "vendor.example/gpu=0", env: [], mounts: [], hooks: [], additionalGids: [], intelRdt: false, netDevices: false, ...e, deviceNodes: nodes ?? [],
  })),
});

test("edits add env, device nodes with their cgroup rule, mounts, hooks and groups to the spec", () => {
  const built = buildContainerSpec(containerInput({ envs: [{ key: "GPU", value: Buffer.from("from-config") }] }));
  const { spec, warnings } = withCdiEdits(built, resolution(
    { env: ["GPU_DRIVER=1"], additionalGids: [0, 44] },
    {
      env: ["GPU=0"],
      nodes: [{ device: { path: "/dev/gpu0", type: "c", major: 1, minor: 5, fileMode: 0o666 }, access: "rw", hostOwner: { uid: 0, gid: 0 } }],
      mounts: [
        { hostPath: "/opt/gpu/lib", containerPath: "/usr/lib/gpu", options: ["ro", "rbind"] },
        { hostPath: "/opt/gpu/hosts", containerPath: "/etc/hosts", type: "bind", options: ["bind"] },
      ],
      hooks: [{ hookName: "createContainer", path: "/usr/bin/gpu-hook", args: ["gpu-hook"] }, { hookName: "poststop", path: "/usr/bin/gpu-clean" }],
      intelRdt: true,
    },
  ));
  const s = spec as SpecWithHooks;
  assert.ok(s.process.env.includes("GPU=0") && !s.process.env.includes("GPU=from-config"), "a later value wins");
  assert.ok(s.process.env.includes("GPU_DRIVER=1"));
  assert.deepEqual(s.linux.devices?.find((d) => d.path === "/dev/gpu0"), { path: "/dev/gpu0", type: "c", major: 1, minor: 5, fileMode: 0o666, uid: 0, gid: 0 });
  assert.deepEqual(s.linux.resources.devices.at(-1), { allow: true, type: "c", major: 1, minor: 5, access: "rw" });
  assert.deepEqual(s.mounts.filter((m) => m.destination === "/etc/hosts"), [{ destination: "/etc/hosts", source: "/opt/gpu/hosts", type: "bind", options: ["bind"] }]);
  const depths = s.mounts.map((m) => m.destination.split("/").length);
  assert.deepEqual(depths, [...depths].sort((x, y) => x - y), "mounts sorted by depth, parents before what they hold");
  assert.ok(s.mounts.some((m) => m.destination === "/usr/lib/gpu"));
  assert.deepEqual(s.hooks, { createContainer: [{ path: "/usr/bin/gpu-hook", args: ["gpu-hook"] }], poststop: [{ path: "/usr/bin/gpu-clean" }] });
  assert.deepEqual(s.process.user.additionalGids, [0, 44], "0 is skipped, groups are kept once");
  assert.match(warnings.join("\n"), /CDI device "vendor.example\/gpu=0": intelRdt ignored/);
  assert.equal(built.spec.process.env.includes("GPU=0"), false, "the built spec is left alone");
});

test("a device node replaces one at its path, is owned by a non-root container user, and privileged containers get it too", () => {
  const node = { device: { path: "/dev/null", type: "c" as const, major: 1, minor: 5 }, access: "rwm", hostOwner: { uid: 0, gid: 0 } };
  const nonRoot = buildContainerSpec(containerInput({}, { user: { uid: 1000, gid: 1000, additionalGids: [1000] } }));
  const { spec } = withCdiEdits(nonRoot, resolution({ nodes: [node] }));
  assert.deepEqual(spec.linux.devices, [{ path: "/dev/null", type: "c", major: 1, minor: 5, uid: 1000, gid: 1000 }]);

  const privileged = buildContainerSpec(containerInput(
    { linux: { security_context: { privileged: true } } },
    { sandbox: { linux: { security_context: { privileged: true } } }, hostDevices: [{ path: "/dev/null", type: "c", major: 1, minor: 3 }] },
  ));
  const edited = withCdiEdits(privileged, resolution({ nodes: [node] })).spec;
  assert.deepEqual(edited.linux.devices?.filter((d) => d.path === "/dev/null"), [{ path: "/dev/null", type: "c", major: 1, minor: 5, uid: 0, gid: 0 }]);
  assert.equal(withCdiEdits(privileged, undefined), privileged, "no CDI devices: the spec as built");
});

test("the registry reads spec files once, re-reads a changed one and skips invalid ones with a warning naming them", async () => {
  const early = await mkdtemp(join(tmpdir(), "crib-cdi-"));
  const late = await mkdtemp(join(tmpdir(), "crib-cdi-"));
  const warnings: Array<Record<string, unknown>> = [];
  const log = pino({ level: "warn" }, { write: (line: string) => void warnings.push(JSON.parse(line) as Record<string, unknown>) });
  try {
    await writeFile(join(early, "gpu.json"), JSON.stringify(gpuSpec()));
    await writeFile(join(early, "broken.yaml"), "cdiVersion: [");
    await writeFile(join(late, "README.txt"), "not a spec");
    const registry = new CdiRegistry([early, join(early, "missing"), late], log);
    assert.equal(await registry.resolve([]), undefined);
    const first = await registry.resolve(["vendor.example/gpu=0"]);
    assert.deepEqual(first?.edits.map((e) => e.env), [["GPU_DRIVER=1"], ["GPU=0"]]);
    assert.deepEqual(first?.edits[1]?.deviceNodes[0]?.device, { path: "/dev/gpu0", type: "c", major: 1, minor: 5, fileMode: 0o666 });
    assert.deepEqual(warnings.map((w) => w["file"]), [join(early, "broken.yaml")]);

    await registry.resolve(["vendor.example/gpu=1"]);
    assert.equal(warnings.length, 1, "an unchanged invalid file is not read (nor warned about) again");
    await writeFile(join(late, "gpu.yaml"), `cdiVersion: "0.6.0"\nkind: vendor.example/gpu\ndevices:\n  - name: "0"\n    containerEdits:\n      env: [GPU=late]\n`);
    const second = await registry.resolve(["vendor.example/gpu=0"]);
    assert.deepEqual(second?.edits.map((e) => e.env), [["GPU=late"]]);
    await assert.rejects(registry.resolve(["vendor.example/gpu=2"]), invalid(/unknown CDI device "vendor.example\/gpu=2".*skipped: .*broken\.yaml/));
  } finally {
    await rm(early, { recursive: true, force: true });
    await rm(late, { recursive: true, force: true });
  }
});
