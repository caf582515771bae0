#!/usr/bin/env bash
# Builds shoal and runs a one-node swarm with the demo stack, as root.
#
#   scripts/demo.sh        # build, start the daemon, init the swarm, deploy
#   scripts/demo.sh down   # remove the stack, leave the swarm, stop the daemon
#
# The daemon keeps its state in /var/lib/shoal and listens on
# /run/shoal/shoal.sock (shoal's defaults); its log is /var/log/shoal.log.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "run me as root: shoal creates namespaces and mounts" >&2; exit 1; }
shoal=target/release/shoal
sock=/run/shoal/shoal.sock

if [ "${1:-}" = down ]; then
  "$shoal" stack rm app || true
  # Leaving removes the node's network devices and rules too.
  "$shoal" swarm leave --force || true
  pkill -TERM -f "shoal daemon --data-root /var/lib/shoal" || true
  exit 0
fi

command -v busybox >/dev/null || { apt-get update -qq && apt-get install -y -qq busybox-static; }
cargo build --release -p shoal -p shoal-runtime

if ! "$shoal" info >/dev/null 2>&1; then
  echo "starting shoal daemon (log: /var/log/shoal.log)"
  setsid "$shoal" daemon --data-root /var/lib/shoal --socket "$sock" >>/var/log/shoal.log 2>&1 < /dev/null &
  for _ in $(seq 100); do "$shoal" info >/dev/null 2>&1 && break; sleep 0.1; done
fi
if [ "$("$shoal" info | awk '/Swarm:/ {print $2}')" != active ]; then
  # Advertised on the machine's own address: the stack's overlay network (its
  # bridge, VXLAN device and DNS) is made on this machine. A swarm advertised on
  # loopback gives containers loopback only.
  "$shoal" swarm init
fi

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/bin" "$rootfs/www" "$rootfs/etc"
cp "$(command -v busybox)" "$rootfs/bin/busybox"
for applet in $(busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
done
echo "hello from shoal" > "$rootfs/www/index.html"
echo "root:x:0:0:root:/root:/bin/sh" > "$rootfs/etc/passwd"
"$shoal" image import "$rootfs" demo:1

"$shoal" stack deploy -c examples/demo/docker-compose.yml app
"$shoal" service ls
"$shoal" stack ps app
sleep 3
echo
echo "The client reaches web by name:"
"$shoal" service logs app_client | tail -3
echo
# The routing mesh serves the published port on the node's address.
addr=$("$shoal" info | awk '/Node Address:/ {print $3}')
url="http://${addr:-127.0.0.1}:8080/"
for _ in $(seq 50); do busybox wget -qO- "$url" >/dev/null 2>&1 && break; sleep 0.2; done
echo "The web service answers at $url (from any node of the swarm):"
busybox wget -qO- "$url"
echo
echo "The stack runs. Open $url, or try: $shoal service scale app_web=5; $shoal service ps app_web; $shoal service logs -f app_client"
echo "Stop it all with: scripts/demo.sh down"
