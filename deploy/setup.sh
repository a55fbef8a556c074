#!/usr/bin/env bash
# Sets up this machine (Debian 12, as root) to run crib, from this checkout:
#   - Debian packages: containerd, runc, CNI plugins, iptables, iproute2, gcc, socat,
#     apparmor (apparmor_parser loads crib's default profile on AppArmor kernels)
#   - crib built and installed in /usr/local/lib/crib, launcher /usr/local/bin/crib
#   - /etc/crib/config.toml (`crib config default`) unless one exists
#   - deploy/cni/10-crib.conflist into /etc/cni/net.d when that has no config
#   - crib's pause built into an OCI archive, /usr/local/lib/crib/pause.tar,
#     which crib imports when the sandbox image is missing (no registry needed)
#   - /etc/crictl.yaml pointing at crib unless one exists
#   - the overlay and br_netfilter modules and the forwarding sysctls, now and
#     at boot (/etc/modules-load.d/crib.conf, /etc/sysctl.d/99-crib.conf)
#   - deploy/systemd/crib.service into /etc/systemd/system
# It never overwrites a file it did not create, or one changed since. Every
# file, directory, package and sysctl change is recorded in
# /var/lib/crib/setup-manifest, and `--uninstall` undoes exactly those (files
# changed since stay, and so does crib's data under /var/lib/crib).
# Running it again updates crib and is otherwise a no-op.
#
#   bash deploy/setup.sh [--skip-build]        (CRIB_SETUP_SKIP_BUILD=1: install the current build)
#   bash deploy/setup.sh --uninstall [--remove-packages]
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
LIB=/usr/local/lib/crib
BIN=/usr/local/bin/crib
STATE_DIR=/var/lib/crib
MANIFEST=$STATE_DIR/setup-manifest
PAUSE_REF=registry.k8s.io/pause:3.10
PACKAGES=(containerd runc containernetworking-plugins iptables iproute2 gcc libc6-dev socat apparmor)
SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables)

say() { printf 'crib setup: %s\n' "$*"; }
die() { printf 'crib setup: error: %s\n' "$*" >&2; exit 1; }

# --- the manifest: one tab-separated entry per line ---
#   package <name> | dir <path> | file <path> <sha256> | tree <path> | sysctl <key> <value before>

record() {
  local line
  line=$(printf '%s\t' "$@")
  line=${line%$'\t'}
  grep -qxF -- "$line" "$MANIFEST" 2>/dev/null || printf '%s\n' "$line" >>"$MANIFEST"
}

record_file() {
  local path=$1 tmp
  tmp=$(mktemp "$MANIFEST.XXXXXX")
  awk -F'\t' -v p="$path" '!($1 == "file" && $2 == p)' "$MANIFEST" >"$tmp"
  mv "$tmp" "$MANIFEST"
  record file "$path" "$(sha256sum "$path" | cut -d' ' -f1)"
}

recorded_sysctl() { awk -F'\t' -v k="$1" '$1 == "sysctl" && $2 == k { found = 1 } END { exit !found }' "$MANIFEST"; }

recorded_hash() { awk -F'\t' -v p="$1" '$1 == "file" && $2 == p { print $3 }' "$MANIFEST"; }

owned() { awk -F'\t' -v p="$1" '($1 == "file" || $1 == "tree") && $2 == p { found = 1 } END { exit !found }' "$MANIFEST" 2>/dev/null; }

ensure_dir() {
  [ -d "$1" ] && return 0
  ensure_dir "$(dirname "$1")"
  mkdir -m 0755 "$1" || die "cannot create $1"
  record dir "$1"
}

# install_file <source> <dest> <mode>: installs, or updates what setup installed before;
# returns 1 (leaving it alone) when dest is not setup's or was changed since setup wrote it
install_file() {
  local src=$1 dest=$2 mode=$3
  if [ -e "$dest" ]; then
    owned "$dest" || return 1
    cmp -s "$src" "$dest" && return 0
    [ "$(sha256sum "$dest" | cut -d' ' -f1)" = "$(recorded_hash "$dest")" ] || return 1
  fi
  ensure_dir "$(dirname "$dest")"
  install -m "$mode" "$src" "$dest" || die "cannot install $dest"
  record_file "$dest"
}

# --- checks ---

module_present() {
  local m=$1
  grep -q "^$m " /proc/modules 2>/dev/null && return 0
  [ -d "/sys/module/$m" ] && return 0
  case $m in
    overlay) grep -qw overlay /proc/filesystems ;;
    br_netfilter) [ -d /proc/sys/net/bridge ] ;;
    *) return 1 ;;
  esac
}

check_node() {
  command -v node >/dev/null || die "crib needs Node.js 20 or later and node is not installed (Debian 12's nodejs is 18: install Node.js 20+, e.g. from NodeSource, then run this again)"
  node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
    die "crib needs Node.js 20 or later; $(command -v node) is $(node --version) (install Node.js 20+, then run this again)"
  command -v npm >/dev/null || die "npm is not installed (it comes with Node.js 20+)"
}

install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get (this script is for Debian 12)"
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  for p in "${missing[@]}"; do record package "$p"; done
}

# --- crib's pause as an OCI image archive ---

oci_platform() {
  case $(dpkg --print-architecture) in
    amd64) echo '"architecture":"amd64","os":"linux"' ;;
    arm64) echo '"architecture":"arm64","os":"linux","variant":"v8"' ;;
    armhf) echo '"architecture":"arm","os":"linux","variant":"v7"' ;;
    i386) echo '"architecture":"386","os":"linux"' ;;
    ppc64el) echo '"architecture":"ppc64le","os":"linux"' ;;
    s390x | riscv64) echo "\"architecture\":\"$(dpkg --print-architecture)\",\"os\":\"linux\"" ;;
    *) die "no OCI platform for Debian architecture $(dpkg --print-architecture)" ;;
  esac
}

# blob <file> <layout>: stores the file as a blob, prints its digest
blob() {
  local digest
  digest=$(sha256sum <"$1" | cut -d' ' -f1)
  cp "$1" "$2/blobs/sha256/$digest"
  printf 'sha256:%s' "$digest"
}

# build_pause_archive <out.tar>: deploy/pause/pause.c, static, as image $PAUSE_REF (reproducible)
build_pause_archive() {
  local out=$1 work platform diff_id layer config manifest
  work=$(mktemp -d)
  mkdir -p "$work/rootfs" "$work/layout/blobs/sha256"
  gcc -static -O2 -s -o "$work/rootfs/pause" "$SRC/deploy/pause/pause.c"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --mode=0755 -C "$work/rootfs" -cf "$work/layer.tar" pause
  diff_id=sha256:$(sha256sum <"$work/layer.tar" | cut -d' ' -f1)
  gzip -n -9 <"$work/layer.tar" >"$work/layer.tar.gz"
  layer=$(blob "$work/layer.tar.gz" "$work/layout")
  platform=$(oci_platform)
  printf '{%s,"config":{"Entrypoint":["/pause"],"User":"65535:65535"},"rootfs":{"type":"layers","diff_ids":["%s"]},"history":[{"created_by":"crib deploy/setup.sh: deploy/pause/pause.c"}]}' \
    "$platform" "$diff_id" >"$work/config.json"
  config=$(blob "$work/config.json" "$work/layout")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}]}' \
    "$config" "$(stat -c %s "$work/config.json")" "$layer" "$(stat -c %s "$work/layer.tar.gz")" >"$work/manifest.json"
  manifest=$(blob "$work/manifest.json" "$work/layout")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d,"platform":{%s},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest" "$(stat -c %s "$work/manifest.json")" "$platform" "$PAUSE_REF" "${PAUSE_REF##*:}" >"$work/layout/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/layout" -cf "$out" oci-layout index.json blobs
  rm -rf "$work"
}

# --- crib itself ---

install_crib() {
  if [ -e "$LIB" ] && ! owned "$LIB"; then die "$LIB exists and was not installed by this script; move it away and run this again"; fi
  if [ -e "$BIN" ] && ! owned "$BIN"; then die "$BIN exists and was not installed by this script; move it away and run this again"; fi
  if [ "$SKIP_BUILD" = 1 ]; then
    [ -f "$SRC/dist/cri/main.js" ] || die "--skip-build: $SRC has no build (run npm ci && npm run build)"
  else
    say "building crib in $SRC"
    (cd "$SRC" && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
  fi
  local stage=$LIB.new.$$
  rm -rf "$stage"
  mkdir -p "$stage/dist"
  cp "$SRC/package.json" "$SRC/package-lock.json" "$SRC/README.md" "$stage/"
  for d in cri cni runtime proto; do cp -a "$SRC/dist/$d" "$stage/dist/"; done
  find "$stage/dist" \( -name '*.test.js' -o -name '*.test.js.map' \) -delete
  # the .proto sources, which crib loads at run time
  tar -C "$SRC" --exclude=proto/gen --exclude='*.ts' --exclude='*.mjs' -cf - proto | tar -C "$stage" -xf -
  cp -a "$SRC/node_modules" "$stage/"
  (cd "$stage" && npm prune --omit=dev --no-audit --no-fund --offline --loglevel=error >/dev/null)
  say "building crib's pause image ($PAUSE_REF)"
  build_pause_archive "$stage/pause.tar"
  ensure_dir "$(dirname "$LIB")"
  if [ -e "$LIB" ]; then mv "$LIB" "$LIB.old.$$"; fi
  mv "$stage" "$LIB"
  rm -rf "$LIB.old.$$"
  record tree "$LIB"
  local launcher
  launcher=$(mktemp)
  # node's flags for crib (package.json "crib".nodeFlags): a young generation of 1 MB semi-spaces keeps the daemon's RSS down
  local flags
  flags=$(node -p 'require(process.argv[1]).crib.nodeFlags.join(" ")' "$LIB/package.json")
  printf '#!/bin/sh\n# crib, installed by deploy/setup.sh\nexec %s %s %s/dist/cri/main.js "$@"\n' "$(command -v node)" "$flags" "$LIB" >"$launcher"
  install_file "$launcher" "$BIN" 0755 || say "kept $BIN: changed since setup"
  rm -f "$launcher"
  say "installed crib $("$BIN" --version) in $LIB"
}

# --- configuration ---

install_config() {
  local tmp
  if [ -e /etc/crib/config.toml ]; then
    say "kept /etc/crib/config.toml"
    return
  fi
  tmp=$(mktemp)
  "$BIN" config default >"$tmp"
  install_file "$tmp" /etc/crib/config.toml 0644
  rm -f "$tmp"
  say "wrote /etc/crib/config.toml"
}

install_cni() {
  local dir=/etc/cni/net.d existing
  ensure_dir "$dir"
  if owned "$dir/10-crib.conflist" && [ -e "$dir/10-crib.conflist" ]; then
    install_file "$SRC/deploy/cni/10-crib.conflist" "$dir/10-crib.conflist" 0644 ||
      say "kept $dir/10-crib.conflist: changed since setup (crib bootstrap renders the node's pod CIDRs into it)"
    return
  fi
  existing=$(find "$dir" -maxdepth 1 -type f \( -name '*.conflist' -o -name '*.conf' -o -name '*.json' \) -printf '%f ')
  existing=${existing% }
  if [ -n "$existing" ]; then
    say "$dir has a network config ($existing); left alone"
    return
  fi
  install_file "$SRC/deploy/cni/10-crib.conflist" "$dir/10-crib.conflist" 0644
  say "installed $dir/10-crib.conflist (bridge crib0, 10.88.0.0/16)"
}

install_crictl() {
  local tmp
  if [ -e /etc/crictl.yaml ]; then
    say "kept /etc/crictl.yaml"
    return
  fi
  tmp=$(mktemp)
  printf 'runtime-endpoint: unix:///run/crib/crib.sock\nimage-endpoint: unix:///run/crib/crib.sock\ntimeout: 30\n' >"$tmp"
  install_file "$tmp" /etc/crictl.yaml 0644
  rm -f "$tmp"
  say "wrote /etc/crictl.yaml (crictl talks to crib)"
}

setup_kernel() {
  local tmp m key before
  tmp=$(mktemp)
  printf '# written by crib deploy/setup.sh: overlayfs snapshots and the CNI bridge\noverlay\nbr_netfilter\n' >"$tmp"
  install_file "$tmp" /etc/modules-load.d/crib.conf 0644 || say "kept /etc/modules-load.d/crib.conf: not written by this script, or changed since"
  printf '# written by crib deploy/setup.sh: pods need forwarding, and bridged traffic through iptables\nnet.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\n' >"$tmp"
  install_file "$tmp" /etc/sysctl.d/99-crib.conf 0644 || say "kept /etc/sysctl.d/99-crib.conf: not written by this script, or changed since"
  rm -f "$tmp"
  for m in overlay br_netfilter; do
    module_present "$m" && continue
    command -v modprobe >/dev/null || die "module $m is not loaded and modprobe is missing (apt-get install kmod)"
    modprobe "$m" || die "cannot load module $m"
  done
  for key in "${SYSCTLS[@]}"; do
    before=$(sysctl -n "$key" 2>/dev/null) || die "sysctl $key does not exist (is br_netfilter loaded?)"
    [ "$before" = 1 ] && continue
    recorded_sysctl "$key" || record sysctl "$key" "$before"
    sysctl -qw "$key=1"
  done
}

install_unit() {
  if install_file "$SRC/deploy/systemd/crib.service" /etc/systemd/system/crib.service 0644; then
    say "installed /etc/systemd/system/crib.service (systemctl enable --now crib)"
  else
    say "kept /etc/systemd/system/crib.service: not written by this script, or changed since"
  fi
  if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
}

setup() {
  check_node
  if [ ! -d "$STATE_DIR" ]; then
    mkdir -p -m 0711 "$STATE_DIR"
    : >>"$MANIFEST"
    record dir "$STATE_DIR"
  fi
  : >>"$MANIFEST"
  install_packages
  install_crib
  install_config
  install_cni
  install_crictl
  setup_kernel
  install_unit
  say "done. Run crib in the foreground with: crib   (or: systemctl enable --now crib). Check the node with: crib doctor"
}

# --- uninstall ---

uninstall() {
  [ -f "$MANIFEST" ] || { say "nothing to uninstall: no $MANIFEST"; return 0; }
  if [ -d /run/systemd/system ] && owned /etc/systemd/system/crib.service; then
    systemctl disable --now crib.service 2>/dev/null || true
  fi
  if [ -S /run/crib/crib.sock ] && [ -x "$BIN" ] && "$BIN" wait-ready --timeout 1s >/dev/null 2>&1; then
    say "warning: crib is serving on /run/crib/crib.sock; it keeps running from deleted files until stopped"
  fi
  local entries=() packages=() kind path extra now
  mapfile -t entries < <(tac "$MANIFEST")
  rm -f "$MANIFEST"
  for entry in "${entries[@]}"; do
    IFS=$'\t' read -r kind path extra <<<"$entry"
    case $kind in
      file)
        [ -e "$path" ] || continue
        if [ "$(sha256sum "$path" | cut -d' ' -f1)" = "$extra" ]; then rm -f "$path"; say "removed $path"; else say "kept $path: changed since setup"; fi
        ;;
      tree) rm -rf "$path" && say "removed $path" ;;
      dir) [ -d "$path" ] || continue; if rmdir "$path" 2>/dev/null; then say "removed $path/"; else say "kept $path/: not empty"; fi ;;
      sysctl)
        now=$(sysctl -n "$path" 2>/dev/null) || continue
        if [ "$now" = 1 ]; then sysctl -qw "$path=$extra" && say "restored $path = $extra"; fi
        ;;
      package) packages+=("$path") ;;
    esac
  done
  if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
  if [ "${#packages[@]}" -gt 0 ]; then
    if [ "$REMOVE_PACKAGES" = 1 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq "${packages[@]}" >/dev/null && say "removed packages ${packages[*]}"
    else
      say "setup installed packages ${packages[*]}; remove them with: apt-get remove ${packages[*]} (or --uninstall --remove-packages)"
    fi
  fi
  say "modules stay loaded until reboot; crib's data (images, containers) stays in $STATE_DIR if crib ran"
}

MODE=setup
SKIP_BUILD=${CRIB_SETUP_SKIP_BUILD:-0}
REMOVE_PACKAGES=0
for arg in "$@"; do
  case $arg in
    --uninstall) MODE=uninstall ;;
    --skip-build) SKIP_BUILD=1 ;;
    --remove-packages) REMOVE_PACKAGES=1 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument $arg (see --help)" ;;
  esac
done
[ "$(id -u)" = 0 ] || die "run as root"
$MODE
