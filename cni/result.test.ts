import assert from "node:assert/strict";
import { test } from "node:test";
import { CniError } from "./exec.js";
import { parseResult } from "./result.js";

// As bridge + host-local + portmap print it with cniVersion 1.0.0 (dual stack).
const result100 = {
  cniVersion: "1.0.0",
  interfaces: [
    { name: "crib0", mac: "aa:bb:cc:00:00:01" },
    { name: "veth1a2b3c4d", mac: "aa:bb:cc:00:00:02" },
    { name: "eth0", mac: "aa:bb:cc:00:00:03", sandbox: "/var/run/netns/crib-abc" },
  ],
  ips: [
    { interface: 2, address: "fd00:10:88::5/64", gateway: "fd00:10:88::1" },
    { interface: 2, address: "10.88.0.5/16", gateway: "10.88.0.1" },
  ],
  routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0", gw: "fd00:10:88::1" }],
  dns: {},
};

// The 0.3.1 format carries a "version" on each IP.
const result031 = {
  cniVersion: "0.3.1",
  interfaces: [
    { name: "cni0", mac: "0a:58:0a:f4:00:01" },
    { name: "vethabc", mac: "12:34:56:78:9a:bc" },
    { name: "eth0", mac: "0a:58:0a:f4:00:07", sandbox: "/var/run/netns/crib-def" },
  ],
  ips: [{ version: "4", interface: 2, address: "10.244.0.7/24", gateway: "10.244.0.1" }],
  routes: [{ dst: "0.0.0.0/0" }],
  dns: { nameservers: ["10.96.0.10"], search: ["svc.cluster.local"] },
};

test("a 1.0.0 result gives the pod interface's IPs, IPv4 first", () => {
  const result = parseResult(result100, "eth0");
  assert.equal(result.cniVersion, "1.0.0");
  assert.deepEqual(result.podIps, ["10.88.0.5", "fd00:10:88::5"]);
  assert.deepEqual(result.ips[1], { family: 4, address: "10.88.0.5", prefixLength: 16, gateway: "10.88.0.1", interface: 2 });
  assert.deepEqual(result.interfaces[2], { name: "eth0", mac: "aa:bb:cc:00:00:03", sandbox: "/var/run/netns/crib-abc" });
  assert.deepEqual(result.routes, [{ dst: "0.0.0.0/0" }, { dst: "::/0", gw: "fd00:10:88::1" }]);
});

test("a 0.3.1 result with version fields is understood", () => {
  const result = parseResult(result031, "eth0");
  assert.deepEqual(result.podIps, ["10.244.0.7"]);
  assert.equal(result.ips[0]?.prefixLength, 24);
  assert.deepEqual(result.dns.nameservers, ["10.96.0.10"]);
  assert.deepEqual(result.dns.search, ["svc.cluster.local"]);
});

test("IPs on host-side interfaces or other pod interfaces are not pod IPs", () => {
  const result = parseResult(
    {
      cniVersion: "1.0.0",
      interfaces: [{ name: "crib0" }, { name: "net1", sandbox: "/ns" }, { name: "eth0", sandbox: "/ns" }],
      ips: [
        { interface: 0, address: "10.88.0.1/16" },
        { interface: 1, address: "192.168.5.5/24" },
        { interface: 2, address: "10.88.0.9/16" },
      ],
    },
    "eth0",
  );
  assert.deepEqual(result.podIps, ["10.88.0.9"]);
});

test("without interface indexes all IPs are pod IPs", () => {
  const result = parseResult({ cniVersion: "1.0.0", ips: [{ address: "2001:db8:0:0::7/64" }, { address: "10.1.2.3/8" }] }, "eth0");
  assert.deepEqual(result.podIps, ["10.1.2.3", "2001:db8::7"]);
});

test("broken results are decoding failures that say what is wrong", () => {
  const cases: Array<[unknown, RegExp]> = [
    ["nope", /not a JSON object/],
    [{ cniVersion: "1.0.0", ips: [{ address: "10.88.0.300/16" }] }, /ips\[0\].*10\.88\.0\.300/],
    [{ cniVersion: "1.0.0", ips: [{ address: "10.88.0.3" }] }, /ips\[0\].*address\/prefix-length/],
    [{ cniVersion: "1.0.0", ips: [{ address: "10.88.0.3/16", interface: 4 }] }, /interface 4 is not an index/],
    [{ cniVersion: "0.3.1", ips: [{ version: "6", address: "10.88.0.3/16" }] }, /is not IPv6/],
    [{ cniVersion: "0.2.0", ip4: { ip: "10.0.0.2/24" } }, /not supported/],
  ];
  for (const [raw, message] of cases) {
    assert.throws(() => parseResult(raw, "eth0"), (err: unknown) => {
      assert.ok(err instanceof CniError);
      assert.equal(err.cniCode, 6);
      assert.match(err.message, message);
      return true;
    });
  }
});
