#!/usr/bin/env bash
# deploy30: time for a 30-replica `sleep` service to converge on one node,
# shoal vs Docker Swarm (Debian docker.io 20.10), same run, interleaved.
#
#   apt-get install -y docker.io busybox-static   # once
#   sudo tests/benches/deploy30.sh                 # REPS=5 by default
#
# Env: REPS (counted reps per side, default 5), SHOAL (binary; default: build
# target/release/shoal), DOCKERD (default /usr/sbin/dockerd), DOCKER (client,
# default /usr/bin/docker). Needs root. Each side gets one uncounted warm-up;
# the order alternates per rep (odd: shoal first, even: docker first).
set -euo pipefail
shopt -s inherit_errexit

REPS=${REPS:-5}
REPLICAS=30
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DOCKERD=${DOCKERD:-/usr/sbin/dockerd}
DOCKER_BIN=${DOCKER:-/usr/bin/docker}
[ "$(id -u)" = 0 ] || { echo "deploy30: needs root" >&2; exit 1; }
for b in "$DOCKERD" "$DOCKER_BIN" python3; do
    command -v "$b" >/dev/null || { echo "deploy30: $b not found (apt-get install docker.io)" >&2; exit 1; }
done
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] || { echo "deploy30: busybox not found (apt-get install busybox-static)" >&2; exit 1; }

if [ -z "${SHOAL:-}" ]; then
    (cd "$ROOT" && cargo build --release -p shoal -p shoal-runtime >&2)
    SHOAL=$ROOT/target/release/shoal
fi

TMP=$(mktemp -d /tmp/deploy30.XXXXXX)
SHOAL_PID=
DOCKERD_PID=
export SHOAL_HOST=unix://$TMP/shoal.sock
export DOCKER_HOST=unix://$TMP/docker.sock

log() { echo "deploy30: $*" >&2; }
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }
shoal() { "$SHOAL" "$@"; }
docker() { "$DOCKER_BIN" "$@"; }

# Pids whose command line contains $1, plus all their descendants.
procs_matching() {
    python3 - "$1" <<'PY'
import os, sys
pat = sys.argv[1]
kids, roots = {}, []
for p in os.listdir("/proc"):
    if not p.isdigit() or int(p) == os.getpid():
        continue
    try:
        cmd = open(f"/proc/{p}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        ppid = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
    except OSError:
        continue
    kids.setdefault(ppid, []).append(int(p))
    if pat in cmd:
        roots.append(int(p))
out, seen = [], set()
while roots:
    p = roots.pop()
    if p in seen:
        continue
    seen.add(p); out.append(p); roots.extend(kids.get(p, []))
print(" ".join(map(str, out)))
PY
}

stop_pid() { # pid, seconds to wait after SIGTERM
    local pid=$1 i
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < $2 * 10; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? pids m
    trap - EXIT INT TERM
    set +e
    log "cleaning up $TMP"
    if [ -n "$DOCKERD_PID" ]; then
        docker service rm sleeper >/dev/null 2>&1
        docker swarm leave --force >/dev/null 2>&1
        stop_pid "$DOCKERD_PID" 20
    fi
    stop_pid "$SHOAL_PID" 10
    # Shims of shoal's containers (and their children), then anything else
    # still running from under $TMP (docker's containerd and its shims).
    for pat in "shoal-shim $TMP" "$TMP"; do
        pids=$(procs_matching "$pat")
        [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
    done
    sleep 0.5
    grep -F " $TMP" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m"
    done
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { # timeout_s, command...
    local t=$1 i; shift
    for ((i = 0; i < t * 10; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    log "timed out waiting for: $*"; return 1
}

# --- rootfs ----------------------------------------------------------------
mkdir -p "$TMP/rootfs/bin"
cp "$BUSYBOX" "$TMP/rootfs/bin/busybox"
for a in $("$BUSYBOX" --list); do
    [ "$a" = busybox ] || ln -s busybox "$TMP/rootfs/bin/$a"
done

# --- shoal -----------------------------------------------------------------
"$SHOAL" daemon --data-root "$TMP/shoal" --socket "$TMP/shoal.sock" >"$TMP/shoal.log" 2>&1 &
SHOAL_PID=$!
wait_for 30 shoal info
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
shoal swarm init --listen-addr "127.0.0.1:$PORT" >/dev/null
shoal image import "$TMP/rootfs" bench:1 >/dev/null
cat >"$TMP/bench.yml" <<YML
services:
  sleeper:
    image: bench:1
    command: ["sleep", "3600"]
    deploy:
      replicas: $REPLICAS
YML

# --- docker ----------------------------------------------------------------
"$DOCKERD" --data-root "$TMP/docker" --exec-root "$TMP/dexec" --pidfile "$TMP/docker.pid" \
    -H "$DOCKER_HOST" --iptables=false --bridge=none >"$TMP/dockerd.log" 2>&1 &
DOCKERD_PID=$!
wait_for 60 docker info
docker swarm init --advertise-addr 127.0.0.1 >/dev/null
tar -C "$TMP/rootfs" -c . | docker import - bench:1 >/dev/null

# --- one rep of each side; prints seconds ----------------------------------
# Cross-check against the kernel: `sleep 3600` processes started from under $TMP
# (shoal's shims and docker's containerd shims both run from there).
sleepers() {
    local n=0 p
    for p in $(procs_matching "$TMP"); do
        [ "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" = "sleep 3600 " ] && n=$((n + 1))
    done
    echo "$n"
}
check_sleepers() {
    local n; n=$(sleepers)
    [ "$n" = "$REPLICAS" ] || { log "$1: $n 'sleep 3600' processes, want $REPLICAS"; return 1; }
}

rep_shoal() {
    local t0 t1 running
    t0=$(now)
    shoal stack deploy -c "$TMP/bench.yml" bench >"$TMP/last.out" 2>&1 || { cat "$TMP/last.out" >&2; return 1; }
    t1=$(now)
    running=$(shoal service ls --format json | python3 -c \
        'import json,sys; print(sum(s["ServiceStatus"]["RunningTasks"] for s in json.load(sys.stdin)))')
    [ "$running" = "$REPLICAS" ] || { log "shoal: $running/$REPLICAS running after deploy returned"; return 1; }
    check_sleepers shoal
    shoal stack rm bench >/dev/null
    elapsed "$t0" "$t1"
}

docker_idle() { [ -z "$(docker ps -aq)" ]; }

rep_docker() {
    local t0 t1 r i
    t0=$(now)
    docker service create -d --name sleeper --replicas "$REPLICAS" --no-resolve-image bench:1 sleep 3600 >/dev/null
    for ((i = 0; ; i++)); do
        r=$(docker service ls --filter name=sleeper --format '{{.Replicas}}')
        [ "$r" = "$REPLICAS/$REPLICAS" ] && break
        ((i < 3000)) || { log "docker: stuck at $r"; return 1; }
        sleep 0.1
    done
    t1=$(now)
    check_sleepers docker
    docker service rm sleeper >/dev/null
    wait_for 300 docker_idle
    elapsed "$t0" "$t1"
}

# Both daemons stay up for the whole run, so each side pays the other's idle cost.
log "warm-up"
rep_shoal >/dev/null
rep_docker >/dev/null
S=() D=()
for ((i = 1; i <= REPS; i++)); do
    if ((i % 2)); then s=$(rep_shoal); d=$(rep_docker); else d=$(rep_docker); s=$(rep_shoal); fi
    S+=("$s") D+=("$d")
    log "rep $i/$REPS: shoal ${s}s  docker ${d}s"
done

# --- report ----------------------------------------------------------------
SHOAL_V=$(shoal --version)
DOCKER_V=$(docker version --format '{{.Server.Version}}')
CG=$( [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] && echo "v2" || echo "v1 (hybrid)")
python3 - "$REPLICAS" "$SHOAL_V" "$DOCKER_V" "$(uname -r)" "$CG" "$(nproc)" "${S[*]}" "${D[*]}" <<'PY'
import statistics as st, sys
n, sv, dv, kern, cg, cpus = sys.argv[1:7]
s = [float(x) for x in sys.argv[7].split()]
d = [float(x) for x in sys.argv[8].split()]
def row(name, v):
    return f"| {name} | {len(v)} | {st.median(v):.3f} | {min(v):.3f} | {max(v):.3f} | {' '.join(f'{x:.2f}' for x in v)} |"
print(f"\n### deploy30: {n}-replica `sleep` service to converged, one node")
print(f"{sv}; Docker {dv} (swarm mode); kernel {kern}; cgroup {cg}; {cpus} CPUs\n")
print("| side | reps | median s | min s | max s | all (s) |")
print("|---|---|---|---|---|---|")
print(row("shoal stack deploy", s))
print(row("docker service create + poll", d))
print(f"\nratio shoal/docker (medians): {st.median(s) / st.median(d):.2f}x")
PY
