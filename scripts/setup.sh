#!/usr/bin/env bash
# Installs everything Tapestry needs on a Debian machine, as root, and builds it.
# Idempotent: a second run only checks and returns in seconds.
#   1. Debian packages that are missing (iproute2, tshark, iperf3, ...); Open vSwitch
#      without starting its system-wide service (bench/e2e.ts runs its own daemons)
#   2. npm ci when package-lock.json changed since the last install
#   3. the native addon (node-gyp) when native/ or binding.gyp changed
#   4. the TypeScript build (incremental)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(iproute2 iputils-ping libpcap-dev iperf3 tshark tcpdump curl ethtool procps kmod python3 make g++
  docker-compose etcd-server podman runc containernetworking-plugins busybox-static tinc
  openvswitch-switch)

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then missing+=("$p"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "setup: missing packages ${missing[*]}; run as root so they can be installed" >&2; exit 1; fi
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections 2>/dev/null || true
  apt-get update -qq
  others=()
  ovs=()
  for p in "${missing[@]}"; do if [ "$p" = openvswitch-switch ]; then ovs+=("$p"); else others+=("$p"); fi; done
  [ ${#others[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${others[@]}" >/dev/null
  if [ ${#ovs[@]} -gt 0 ]; then
    # openvswitch-switch's postinst starts a system-wide ovsdb-server and ovs-vswitchd
    # (and loads the openvswitch kernel module). The benchmark runs its own daemons in
    # its namespaces, so the install goes through a policy-rc.d that refuses every
    # service start (101), restored to what it was afterwards.
    policy=/usr/sbin/policy-rc.d
    saved=
    if [ -e "$policy" ]; then saved=$(mktemp) && cp -p "$policy" "$saved"; fi
    restore_policy() { if [ -n "$saved" ]; then mv -f "$saved" "$policy"; else rm -f "$policy"; fi; }
    trap restore_policy EXIT
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 0755 "$policy"
    apt-get install -y -qq --no-install-recommends "${ovs[@]}" >/dev/null
    restore_policy
    trap - EXIT
  fi
fi

[ -e /dev/net/tun ] || { mkdir -p /dev/net && mknod /dev/net/tun c 10 200 && chmod 0666 /dev/net/tun; } || true
modprobe vxlan 2>/dev/null || true

lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f node_modules/.tapestry-lock ] || [ "$(cat node_modules/.tapestry-lock)" != "$lock_sum" ]; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_sum" > node_modules/.tapestry-lock
fi

# Dependencies with native parts (allowed in package.json's allowScripts); rebuilt
# here too in case the npm in use skipped their install scripts.
for dep in cap raw-socket; do
  if [ -d "node_modules/$dep" ] && ! ls node_modules/$dep/build/Release/*.node >/dev/null 2>&1; then
    log "building $dep"
    (cd "node_modules/$dep" && ../.bin/node-gyp rebuild $( [ -f /usr/include/node/node_api.h ] && echo --nodedir=/usr ) --loglevel=error >/dev/null)
  fi
done

addon=build/Release/tapestry_native.node
if [ ! -f "$addon" ] || [ -n "$(find native binding.gyp -newer "$addon" 2>/dev/null | head -1)" ]; then
  log "building the native addon"
  gyp_args=(rebuild)
  # Build against the installed Node's headers when the distribution ships them (no download needed).
  [ -f /usr/include/node/node_api.h ] && gyp_args+=(--nodedir=/usr)
  node_modules/.bin/node-gyp "${gyp_args[@]}" --loglevel=error >/dev/null
fi

log "compiling TypeScript"
node_modules/.bin/tsc -p tsconfig.json
