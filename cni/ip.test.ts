import assert from "node:assert/strict";
import { test } from "node:test";
import { InvalidIpError, isValidCidr, parseCidr, parseIp, parseIpWithPrefix, podCidrsToIpRanges } from "./ip.js";

test("CIDRs of both families are parsed to canonical form", () => {
  assert.deepEqual(parseCidr("10.88.0.0/16"), { family: 4, network: "10.88.0.0", prefixLength: 16, cidr: "10.88.0.0/16" });
  assert.deepEqual(parseCidr("FD00:0:0:0::/64"), { family: 6, network: "fd00::", prefixLength: 64, cidr: "fd00::/64" });
  assert.equal(parseCidr("0.0.0.0/0").cidr, "0.0.0.0/0");
});

test("invalid CIDRs are refused with the value in the message", () => {
  for (const text of ["10.88.0.0", "10.88.0.0/33", "10.88.0/16", "300.0.0.0/8", "fd00::/129", "x/8", "10.88.0.0/-1", ""]) {
    assert.equal(isValidCidr(text), false, text);
    assert.throws(() => parseCidr(text), (err: unknown) => err instanceof InvalidIpError && err.message.includes(`"${text}"`));
  }
});

test("a CIDR with host bits set names the network it probably meant", () => {
  assert.throws(() => parseCidr("10.88.1.0/16"), /host bits are set \(the network is 10\.88\.0\.0\/16\)/);
  assert.throws(() => parseCidr("fd00::1/64"), /the network is fd00::\/64/);
});

test("interface addresses keep their host bits", () => {
  assert.deepEqual(parseIpWithPrefix("10.88.0.5/16"), { family: 4, address: "10.88.0.5", prefixLength: 16 });
  assert.deepEqual(parseIpWithPrefix("2001:DB8::5/64"), { family: 6, address: "2001:db8::5", prefixLength: 64 });
  assert.deepEqual(parseIp("::1"), { family: 6, address: "::1" });
  assert.throws(() => parseIp("10.0.0.01"), /invalid IP address "10.0.0.01"/);
});

test("pod CIDRs become host-local ipRanges, one range set per family", () => {
  assert.deepEqual(podCidrsToIpRanges(["10.244.1.0/24", "fd00:244:1::/64"]), [[{ subnet: "10.244.1.0/24" }], [{ subnet: "fd00:244:1::/64" }]]);
  assert.throws(() => podCidrsToIpRanges(["10.244.1.0/24", "10.244.2.0/24"]), /more than one IPv4 CIDR/);
});

test("IPv6 text is RFC 5952: lower case, the longest zero run (the first of equal ones) as ::, a lone zero group kept", () => {
  const cases: Array<[string, string]> = [
    ["1:0:0:1:0:0:0:1", "1:0:0:1::1"], ["1:0:0:0:1:0:0:1", "1::1:0:0:1"], ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["0:0:0:0:0:0:0:0", "::"], ["1::", "1::"], ["::1:0:0:0:0:0:0", "0:1::"], ["1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"],
    ["::0:1", "::1"], ["0001::", "1::"], ["::ffff:1.2.3.4", "::ffff:102:304"], ["FE80:0:0:0:0:0:0:ABCD", "fe80::abcd"],
  ];
  for (const [text, canonical] of cases) assert.equal(parseIp(text).address, canonical, text);
  for (const text of ["fe80::1%eth0", "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", " 1.2.3.4", "01.2.3.4", "1.2.3.256"]) {
    assert.throws(() => parseIp(text), (err: unknown) => err instanceof InvalidIpError && err.message.includes(`"${text}"`), text);
  }
});

test("a network's first address is found on any prefix length, not only on group boundaries", () => {
  assert.equal(parseCidr("10.88.128.0/17").cidr, "10.88.128.0/17");
  assert.throws(() => parseCidr("10.88.129.0/17"), /the network is 10\.88\.128\.0\/17/);
  assert.equal(parseCidr("fd00:0:0:8000::/49").cidr, "fd00:0:0:8000::/49");
  assert.throws(() => parseCidr("fd00:0:0:c000::/49"), /the network is fd00:0:0:8000::\/49/);
  assert.equal(parseCidr("::/0").cidr, "::/0");
  assert.equal(parseCidr("10.1.2.3/32").cidr, "10.1.2.3/32");
  assert.equal(parseCidr("fd00::1/128").cidr, "fd00::1/128");
});
