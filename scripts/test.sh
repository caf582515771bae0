#!/usr/bin/env bash
# Runs shoal's tests: unit tests of every crate and the end-to-end tests,
# which start real daemons and containers (so: as root, with a static
# busybox to build test images from).
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "run the tests as root: they create namespaces and mounts" >&2; exit 1; }
# What the tests run: busybox images; the mesh's tools (ip, nft, iptables); nsenter.
missing=()
command -v busybox >/dev/null || missing+=(busybox-static)
command -v ip >/dev/null || missing+=(iproute2)
command -v nft >/dev/null || missing+=(nftables)
command -v iptables >/dev/null || missing+=(iptables)
command -v nsenter >/dev/null || missing+=(util-linux)
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
cargo build --workspace --locked
cargo test --workspace --locked
