import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import { defaultNetworkConfig, renderHostLocalRanges } from "./pod-cidrs.js";

const ipamOf = (config: Record<string, unknown>) => ((config["plugins"] as Array<Record<string, unknown>>)[0]!["ipam"]) as Record<string, unknown>;

test("crib's default network config is deploy/cni/10-crib.conflist", async () => {
  const shipped = JSON.parse(await readFile(new URL("../../deploy/cni/10-crib.conflist", import.meta.url), "utf8")) as unknown;
  assert.deepEqual(defaultNetworkConfig(), shipped, "keep cni/pod-cidrs.ts and deploy/cni/10-crib.conflist the same");
});

test("an IPv4 pod CIDR replaces the host-local ranges and keeps the v4 default route", () => {
  const { config, changed, subnets } = renderHostLocalRanges(defaultNetworkConfig(), ["10.244.3.0/24"]);
  assert.equal(changed, true);
  assert.deepEqual(subnets, ["10.244.3.0/24"]);
  assert.deepEqual(ipamOf(config), { type: "host-local", ranges: [[{ subnet: "10.244.3.0/24" }]], routes: [{ dst: "0.0.0.0/0" }] });
  assert.deepEqual(ipamOf(defaultNetworkConfig())["ranges"], [[{ subnet: "10.88.0.0/16", gateway: "10.88.0.1" }]], "the input is not changed");
});

test("dual-stack pod CIDRs give one range set and one default route per family", () => {
  const { config } = renderHostLocalRanges(defaultNetworkConfig(), ["10.244.3.0/24", "FD00:10:244:3::/64"]);
  assert.deepEqual(ipamOf(config)["ranges"], [[{ subnet: "10.244.3.0/24" }], [{ subnet: "fd00:10:244:3::/64" }]]);
  assert.deepEqual(ipamOf(config)["routes"], [{ dst: "0.0.0.0/0" }, { dst: "::/0" }]);
});

test("an IPv6-only node loses the IPv4 routes and the single-range keys", () => {
  const original = { cniVersion: "0.4.0", name: "old", type: "bridge", ipam: { type: "host-local", subnet: "10.1.0.0/16", gateway: "10.1.0.1", routes: [{ dst: "0.0.0.0/0" }, { dst: "fd00:1::/64" }] } };
  const { config } = renderHostLocalRanges(original, ["fd00:10:244:3::/64"]);
  assert.deepEqual(config["ipam"], { type: "host-local", ranges: [[{ subnet: "fd00:10:244:3::/64" }]], routes: [{ dst: "fd00:1::/64" }, { dst: "::/0" }] });
});

test("rendering what is already there changes nothing", () => {
  const once = renderHostLocalRanges(defaultNetworkConfig(), ["10.244.3.0/24"]).config;
  assert.equal(renderHostLocalRanges(once, ["10.244.3.0/24"]).changed, false);
});

test("bad pod CIDRs and configs without host-local are refused with the reason", () => {
  assert.throws(() => renderHostLocalRanges(defaultNetworkConfig(), []), /no pod CIDRs/);
  assert.throws(() => renderHostLocalRanges(defaultNetworkConfig(), ["10.244.3.1/24"]), /host bits are set/);
  assert.throws(() => renderHostLocalRanges(defaultNetworkConfig(), ["10.244.3.0/24", "10.245.0.0/24"]), /more than one IPv4 CIDR/);
  const dhcp = { cniVersion: "1.0.0", name: "lan", plugins: [{ type: "macvlan", ipam: { type: "dhcp" } }] };
  assert.throws(() => renderHostLocalRanges(dhcp, ["10.244.3.0/24"]), /network "lan" has no host-local IPAM/);
});
