#!/bin/sh
# A busy, shared node for running the suite the way the dev guide asks: a
# second containerd with its own CRI plugin, a registry on 127.0.0.1:5000, a
# foreign CNI config in /etc/cni/net.d and two CPU hogs (stress-ng --cpu 2).
#   test/shared-node.sh up [DIR]     start them (DIR default /tmp/crib-shared-node)
#   test/shared-node.sh down [DIR]   stop them by the PIDs `up` recorded, remove what it made
# Then e.g.: test/shared-node.sh up && npm test; test/shared-node.sh down
set -eu
cmd=${1:-}
dir=${2:-/tmp/crib-shared-node}
foreign=/etc/cni/net.d/99-crib-shared-node-foreign.conflist

up() {
  mkdir -p "$dir"
  [ -e "$dir/pids" ] && { echo "already up: $dir/pids" >&2; exit 1; }
  cat > "$dir/containerd.toml" <<EOF
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    conf_dir = "$dir/net.d"
EOF
  mkdir -p "$dir/net.d"
  containerd --config "$dir/containerd.toml" > "$dir/containerd.log" 2>&1 &
  echo $! >> "$dir/pids"
  if ss -ltn 'sport = :5000' | grep -q LISTEN; then
    echo "127.0.0.1:5000 is already taken: left to its owner" >&2
  else
    cat > "$dir/registry.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $dir/registry
http:
  addr: 127.0.0.1:5000
EOF
    docker-registry serve "$dir/registry.yml" > "$dir/registry.log" 2>&1 &
    echo $! >> "$dir/pids"
  fi
  mkdir -p /etc/cni/net.d
  # sorts last, names a plugin no node has: a crib that loaded it would fail every pod
  cat > "$foreign" <<EOF
{"cniVersion":"1.0.0","name":"someone-elses","plugins":[{"type":"not-crib-s-plugin"}]}
EOF
  stress-ng --cpu 2 --quiet > "$dir/stress.log" 2>&1 &
  echo $! >> "$dir/pids"
  echo "up: containerd with CRI at $dir/containerd.sock, stress-ng --cpu 2, $foreign; pids in $dir/pids"
}

down() {
  [ -e "$dir/pids" ] || { echo "not up: no $dir/pids" >&2; exit 0; }
  for pid in $(cat "$dir/pids"); do kill "$pid" 2>/dev/null || true; done
  for pid in $(cat "$dir/pids"); do
    i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -f "$foreign" "$dir/pids"
  umount -R "$dir/containerd" 2>/dev/null || true
  rm -rf "$dir"
  echo "down"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down [DIR]" >&2; exit 2 ;;
esac
