#!/usr/bin/env bash
# Runs shoal's tests: unit tests of every crate and the end-to-end tests,
# which start real daemons and containers (so: as root, with a static
# busybox to build test images from).
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "run the tests as root: they create namespaces and mounts" >&2; exit 1; }
if ! command -v busybox >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static
fi
cargo build --workspace --locked
cargo test --workspace --locked
