// CDI devices as kubelet asks for them (CDI_devices, or cdi.k8s.io/ annotations),
// described by spec files in crib's [cdi] spec_dirs, and checked from inside the
// container: the device node reads, the env and the mount are there.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PodEnv, leftovers } from "../fixtures/pod-env.js";
import { BUSYBOX_REF } from "../fixtures/local-images.js";
import type * as cri from "../../proto/gen/cri/types.js";

type Pod = { id: string; config: cri.PodSandboxConfig__Input };
type RpcError = { code: number; details: string };

/** What crib has made in containerd and on the host, each list sorted. */
const state = async (env: PodEnv) => Object.fromEntries(Object.entries(await leftovers(env)).map(([k, v]) => [k, [...v].sort()]));

describe("CDI devices", () => {
  let env: PodEnv;
  let pod: Pod;
  let dir: string;
  const early = () => join(dir, "etc-cdi");
  const late = () => join(dir, "run-cdi");
  const shared = () => join(dir, "gpu-libs");

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "crib-cdi-"));
    await Promise.all([early(), late(), shared()].map((d) => mkdir(d)));
    await writeFile(join(shared(), "libgpu.txt"), "gpu library\n");
    await writeFile(join(early(), "gpu.json"), JSON.stringify({
      cdiVersion: "0.6.0",
      kind: "vendor.example/gpu",
      containerEdits: { env: ["GPU_VENDOR=example"] },
      devices: [
        {
          name: "0",
          containerEdits: {
            env: ["GPU_VISIBLE=0"],
            deviceNodes: [{ path: "/dev/gpu0", hostPath: "/dev/zero", permissions: "rw" }],
            mounts: [{ hostPath: shared(), containerPath: "/opt/gpu", type: "bind", options: ["rbind", "ro"] }],
            // runs on the host when runc creates the container
            hooks: [{ hookName: "createRuntime", path: "/bin/sh", args: ["sh", "-c", `echo "$HOOK_SAYS" > ${join(dir, "hook-ran")}`], env: ["HOOK_SAYS=gpu ready"] }],
          },
        },
        { name: "1", containerEdits: { env: ["GPU_VISIBLE=1"] } },
      ],
    }));
    await writeFile(join(early(), "nic.yaml"), [
      'cdiVersion: "0.6.0"',
      "kind: vendor.example/nic",
      "devices:",
      "  - name: eth",
      "    containerEdits:",
      "      env: [NIC=eth]",
      "",
    ].join("\n"));
    await writeFile(join(early(), "broken.yaml"), "cdiVersion: 0.6.0\nkind: not-a-kind\ndevices: [\n");
    env = await PodEnv.start({ config: { cdi: { spec_dirs: [early(), late()] } } });
    pod = await env.runPod("cdi");
  });
  after(async () => {
    await env?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const create = (p: Pod, name: string, config: Partial<cri.ContainerConfig__Input>) => env.runContainer(p, name, config);
  const shell = async (id: string, script: string) => {
    const r = await env.exec(id, ["/bin/sh", "-c", script]);
    assert.equal(r.code, 0, `${script}: ${r.stderr}`);
    return r.stdout;
  };

  it("gives the device node, the env and the mount of a device named in CDI_devices", async () => {
    const id = await create(pod, "gpu", { CDI_devices: [{ name: "vendor.example/gpu=0" }] });
    assert.equal(await shell(id, "test -c /dev/gpu0 && head -c 4 /dev/gpu0 | od -An -tx1"), " 00 00 00 00\n", "/dev/gpu0 is the host's /dev/zero");
    assert.equal(await shell(id, "echo $GPU_VENDOR $GPU_VISIBLE"), "example 0\n", "the spec's env, then the device's");
    assert.equal(await shell(id, "cat /opt/gpu/libgpu.txt"), "gpu library\n");
    assert.notEqual((await env.exec(id, ["/bin/touch", "/opt/gpu/x"])).code, 0, "the mount is read-only as its options say");
    assert.equal(await readFile(join(dir, "hook-ran"), "utf8"), "gpu ready\n", "the device's createRuntime hook ran");

    const info = JSON.parse((await env.client.runtime.ContainerStatus({ container_id: id, verbose: true })).info["info"] ?? "{}") as {
      cdiDevices: string[];
      runtimeSpec: { linux: { devices: { path: string; major: number; minor: number }[]; resources: { devices: { allow: boolean; major?: number; minor?: number; access?: string }[] } } };
    };
    assert.deepEqual(info.cdiDevices, ["vendor.example/gpu=0"]);
    assert.ok(info.runtimeSpec.linux.devices.some((d) => d.path === "/dev/gpu0" && d.major === 1 && d.minor === 5));
    assert.deepEqual(info.runtimeSpec.linux.resources.devices.at(-1), { allow: true, type: "c", major: 1, minor: 5, access: "rw" });
  });

  it("gives devices named in cdi.k8s.io/ annotations, and a privileged container gets them too", async () => {
    const id = await create(pod, "nic", { annotations: { "cdi.k8s.io/nic-plugin": "vendor.example/nic=eth" } });
    assert.equal(await shell(id, "echo $NIC"), "eth\n");

    const privileged = await env.runPod("cdi-privileged", { linux: { security_context: { privileged: true, namespace_options: { pid: "CONTAINER" } } } });
    const p = await create(privileged, "gpu", {
      CDI_devices: [{ name: "vendor.example/gpu=0" }],
      annotations: { "cdi.k8s.io/gpu-plugin": "vendor.example/gpu=0,vendor.example/nic=eth" },
      linux: { security_context: { privileged: true } },
    });
    assert.equal(await shell(p, "test -c /dev/gpu0 && head -c 2 /dev/gpu0 | od -An -tx1"), " 00 00\n");
    assert.equal(await shell(p, "echo $GPU_VISIBLE $NIC"), "0 eth\n", "each device once, from both sources");
    await env.client.runtime.StopPodSandbox({ pod_sandbox_id: privileged.id });
    await env.client.runtime.RemovePodSandbox({ pod_sandbox_id: privileged.id });
  });

  it("refuses an unknown device with INVALID_ARGUMENT naming it and where it looked, and creates nothing", async () => {
    const before = await state(env);
    const listed = async () => (await env.client.runtime.ListContainers({ filter: { pod_sandbox_id: pod.id } })).containers.map((c) => c.metadata?.name);
    await assert.rejects(create(pod, "unknown", { CDI_devices: [{ name: "vendor.example/gpu=9" }] }), (e: RpcError) => {
      assert.equal(e.code, 3, e.details);
      assert.match(e.details, /unknown CDI device "vendor\.example\/gpu=9"/);
      assert.ok(e.details.includes(early()) && e.details.includes(late()), `names the spec dirs: ${e.details}`);
      assert.ok(e.details.includes(join(early(), "broken.yaml")), `names the skipped file: ${e.details}`);
      return true;
    });
    await assert.rejects(create(pod, "unknown", { annotations: { "cdi.k8s.io/x": "not-qualified" } }), (e: RpcError) => e.code === 3 && e.details.includes('"not-qualified"'));
    assert.match(await env.crib.log(), /"file":"[^"]*broken\.yaml"[^\n]*CDI spec file skipped/, "the log names the skipped file");
    assert.ok(!(await listed()).includes("unknown"), "no container listed");
    assert.deepEqual(await state(env), before, "nothing left in containerd or on the host");
    // the name was not kept reserved
    const id = await create(pod, "unknown", { CDI_devices: [{ name: "vendor.example/gpu=1" }] });
    await env.client.runtime.StopContainer({ container_id: id, timeout: 0 });
    await env.client.runtime.RemoveContainer({ container_id: id });
  });

  it("lets a spec in a later directory override the same device, read as soon as it is written", async () => {
    const first = await create(pod, "gpu1-before", { CDI_devices: [{ name: "vendor.example/gpu=1" }] });
    assert.equal(await shell(first, "echo $GPU_VENDOR $GPU_VISIBLE"), "example 1\n");
    await writeFile(join(late(), "gpu-override.yaml"), [
      'cdiVersion: "0.6.0"',
      "kind: vendor.example/gpu",
      "containerEdits:",
      "  env: [GPU_VENDOR=override-vendor]",
      "devices:",
      '  - name: "1"',
      "    containerEdits:",
      "      env: [GPU_VISIBLE=override]",
      "",
    ].join("\n"));
    const second = await create(pod, "gpu1-after", { CDI_devices: [{ name: "vendor.example/gpu=1" }] });
    assert.equal(await shell(second, "echo $GPU_VENDOR $GPU_VISIBLE"), "override-vendor override\n");
    const zero = await create(pod, "gpu0-after", { CDI_devices: [{ name: "vendor.example/gpu=0" }] });
    assert.equal(await shell(zero, "echo $GPU_VENDOR $GPU_VISIBLE"), "example 0\n", "devices the later file leaves out keep their own spec");
  });

  it("keeps working with the broken spec file skipped", async () => {
    const id = await create(pod, "both", { CDI_devices: [{ name: "vendor.example/nic=eth" }, { name: "vendor.example/gpu=0" }], image: { image: BUSYBOX_REF } });
    assert.equal(await shell(id, "echo $NIC $GPU_VISIBLE; test -c /dev/gpu0"), "eth 0\n");
  });
});
