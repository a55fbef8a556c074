#!/usr/bin/env bash
# Sets up a Debian 12 machine (as root) to build and test crib: the real stack
# from Debian's archive, then the npm dependencies and the build. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(containerd runc containernetworking-plugins iptables iproute2 util-linux
  busybox-static docker-registry gcc libc6-dev zstd openssl ca-certificates
  socat apparmor golang-go golang-google-grpc-dev golang-goprotobuf-dev protobuf-compiler python3-grpcio stress-ng)
  # socat: port forwarding into pod network namespaces (runtime/port-dial.ts);
  # apparmor: apparmor_parser, which compiles crib's default profile in the tests;
  # golang-*, protobuf-compiler: the grpc-go CRI client of the tests (test/go/), built offline;
  # python3-grpcio: a second non-Node gRPC client in the tests;
  # stress-ng: the CPU load of test/shared-node.sh
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts no containerd for us without systemd, and the tests run their own;
# the kernel modules are needed by overlay snapshots and the CNI bridge.
modprobe overlay 2>/dev/null || true
modprobe br_netfilter 2>/dev/null || true
sysctl -qw net.ipv4.ip_forward=1 || true

npm ci --no-audit --no-fund
npm run build
