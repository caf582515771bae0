#!/usr/bin/env bash
# start: container start latency, parallel start and memory, shoal vs crun, runc
# and Docker, same run, same busybox rootfs (perf-anchors §7 B1).
#
#   apt-get install -y hyperfine crun runc docker.io busybox-static   # once
#   sudo tests/benches/start.sh
#
# 1. One `true` container, create → start → exit → remove, timed by hyperfine:
#      shoal   `shoal run --rm bb:1 true`           (CLI → daemon HTTP API → shim)
#      shoal-rt `shoal-rt run --data-root D bb:1 true` (the runtime library driven
#              directly, no daemon: create, start, wait, remove in one process, as crun run)
#      shoal-rt-loop  `shoal-rt bench --data-root D --runs RUNS bb:1 true`: the
#              same cycle RUNS times in one process that opened the runtime once, timed
#              inside it (no exec of shoal-rt, no Runtime::open per container; each start
#              still launches a shim process); not hyperfine, its own clock per cycle
#      crun    `crun run --bundle B ID`             (deletes the container on exit)
#      crun-nocg  the same with `--cgroup-manager=disabled` (start cost without cgroups)
#      runc    `runc run --bundle B ID`             (deletes the container on exit)
#      docker  `docker run --rm --network none bb:1 true`
#    ROUNDS rounds of RUNS counted runs (+ WARMUP uncounted) per side; the side
#    order rotates every round; statistics are over all counted runs.
# 2. PAR containers `true` started at once (xargs -P PAR), wall time to all
#    exited and removed: shoal, crun, runc (and docker unless PAR_DOCKER=0),
#    PAR_REPS reps per side, interleaved, one uncounted warm-up each.
# 3. Memory (VmRSS): one shim beside one `sleep` container, then the daemon
#    idle and with MEM_N running `sleep 1000` containers; Docker's containerd
#    shim and dockerd + containerd the same way, for comparison.
#
# The OCI bundle is `crun spec` with root.path = the rootfs (read-write),
# args ["true"], terminal false; its namespaces (pid, net, ipc, uts, mount) are
# those shoal gives a container; no network is set up on any side. On this host
# (cgroup v1 hybrid with an empty cgroup2 mount at /sys/fs/cgroup/unified) crun
# refuses to run ("cgroups in hybrid mode not supported"), so crun's hyperfine
# and parallel runs happen inside one `unshare -m` that unmounts it first, which
# is outside the timed commands.
#
# Env: ROUNDS (2), RUNS (50), WARMUP (5), PAR (100), PAR_REPS (3), MEM_N (100),
# PAR_DOCKER (1), OUT (a directory to keep hyperfine's JSON in), SHOAL (binary, with shoal-shim and shoal-rt next to it;
# default: build target/release/shoal),
# DOCKERD (/usr/sbin/dockerd), DOCKER (/usr/bin/docker). Needs root.
set -euo pipefail
shopt -s inherit_errexit

ROUNDS=${ROUNDS:-2}
RUNS=${RUNS:-50}
WARMUP=${WARMUP:-5}
PAR=${PAR:-100}
PAR_REPS=${PAR_REPS:-3}
MEM_N=${MEM_N:-100}
PAR_DOCKER=${PAR_DOCKER:-1}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DOCKERD=${DOCKERD:-/usr/sbin/dockerd}
DOCKER_BIN=${DOCKER:-/usr/bin/docker}
[ "$(id -u)" = 0 ] || { echo "start: needs root" >&2; exit 1; }
for b in "$DOCKERD" "$DOCKER_BIN" hyperfine crun runc unshare python3 xargs; do
    command -v "$b" >/dev/null || { echo "start: $b not found (apt-get install hyperfine crun runc docker.io)" >&2; exit 1; }
done
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] || { echo "start: busybox not found (apt-get install busybox-static)" >&2; exit 1; }

if [ -z "${SHOAL:-}" ]; then
    (cd "$ROOT" && cargo build --release -p shoal -p shoal-runtime >&2)
    SHOAL=${CARGO_TARGET_DIR:-$ROOT/target}/release/shoal
fi
for b in shoal-shim shoal-rt; do
    [ -x "$(dirname "$SHOAL")/$b" ] ||
        { echo "start: $(dirname "$SHOAL")/$b not found: it is built with the runtime (cargo build --release -p shoal -p shoal-runtime)" >&2; exit 1; }
done
SHOAL_RT=$(dirname "$SHOAL")/shoal-rt

TMP=$(mktemp -d /tmp/start.XXXXXX)
TAG=$(basename "$TMP" | tr -c 'a-zA-Z0-9\n' -) # prefix of every crun/runc container ID
SHOAL_PID=
DOCKERD_PID=
export SHOAL_HOST=unix://$TMP/shoal.sock
export DOCKER_HOST=unix://$TMP/docker.sock

log() { echo "start: $*" >&2; }
shoal() { "$SHOAL" "$@"; }
docker() { "$DOCKER_BIN" "$@"; }
# crun in hybrid cgroup mode: a private mount namespace without the empty cgroup2 mount.
nounified() { unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null || true; exec "$0" "$@"' "$@"; }

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

# crun/runc containers of this run (IDs start with $TAG), whatever state they are in.
oci_cleanup() {
    local rt=$1 id
    for id in $("$rt" list -q 2>/dev/null | grep "^$TAG" || true); do
        "$rt" kill "$id" KILL >/dev/null 2>&1
        "$rt" delete -f "$id" >/dev/null 2>&1
    done
}

cleanup() {
    local rc=$? pids m
    trap - EXIT INT TERM
    set +e
    log "cleaning up $TMP"
    if [ -n "$SHOAL_PID" ]; then
        pids=$(shoal ps -aq 2>/dev/null)
        [ -n "$pids" ] && shoal container rm -f $pids >/dev/null 2>&1
    fi
    if [ -n "$DOCKERD_PID" ]; then
        pids=$(docker ps -aq 2>/dev/null)
        [ -n "$pids" ] && docker rm -f $pids >/dev/null 2>&1
        stop_pid "$DOCKERD_PID" 20
    fi
    stop_pid "$SHOAL_PID" 10
    oci_cleanup runc
    nounified sh -c "$(declare -f oci_cleanup); TAG=$TAG; oci_cleanup crun" 2>/dev/null
    oci_cleanup crun
    # Shims of shoal's containers (and their children), crun/runc containers of
    # this run, then anything else still running from under $TMP (docker's
    # containerd and its shims).
    for pat in "shoal-shim $TMP" "$TAG" "$TMP"; do
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

# --- rootfs and bundle -----------------------------------------------------
mkdir -p "$TMP/rootfs/bin"
cp "$BUSYBOX" "$TMP/rootfs/bin/busybox"
for a in $("$BUSYBOX" --list); do
    [ "$a" = busybox ] || ln -s busybox "$TMP/rootfs/bin/$a"
done
mkdir -p "$TMP/bundle"
(cd "$TMP/bundle" && crun spec)
python3 - "$TMP/bundle/config.json" "$TMP/rootfs" <<'PY'
import json, sys
path, rootfs = sys.argv[1:3]
c = json.load(open(path))
c["root"] = {"path": rootfs, "readonly": False}
c["process"]["args"] = ["true"]
c["process"]["terminal"] = False
json.dump(c, open(path, "w"), indent=1)
PY

# --- daemons ---------------------------------------------------------------
"$SHOAL" daemon --data-root "$TMP/shoal" --socket "$TMP/shoal.sock" >"$TMP/shoal.log" 2>&1 &
SHOAL_PID=$!
wait_for 30 shoal info
shoal image import "$TMP/rootfs" bb:1 >/dev/null

"$DOCKERD" --data-root "$TMP/docker" --exec-root "$TMP/dexec" --pidfile "$TMP/docker.pid" \
    -H "$DOCKER_HOST" --iptables=false --bridge=none >"$TMP/dockerd.log" 2>&1 &
DOCKERD_PID=$!
wait_for 60 docker info
tar -C "$TMP/rootfs" -c . | docker import - bb:1 >/dev/null

# Sanity: each side really runs the container and leaves nothing behind.
shoal run --rm bb:1 true
[ "$(shoal run --rm bb:1 sh -c 'echo ok')" = ok ] || { log "shoal: no output"; exit 1; }
[ "$("$SHOAL_RT" run --data-root "$TMP/shoal" bb:1 sh -c 'echo ok >&2; exit 3' 2>&1; echo $?)" = 3 ] ||
    { log "shoal-rt run: wrong exit code"; exit 1; }
nounified crun run --bundle "$TMP/bundle" "$TAG-check"
runc run --bundle "$TMP/bundle" "$TAG-check"
docker run --rm --network none bb:1 true
[ -z "$(shoal ps -aq)" ] && [ -z "$(docker ps -aq)" ] || { log "containers left after the sanity runs"; exit 1; }

# --- 1. start latency ------------------------------------------------------
# crun and runc delete the container when `run` returns, so one ID serves every
# run (a run that failed to clean up makes the next fail, and hyperfine stop).
SIDES=(shoal shoal-rt shoal-rt-loop crun runc docker)
hf() { # name json command... (hyperfine, no intermediate shell)
    local name=$1 json=$2; shift 2
    hyperfine -N --style basic --warmup "$WARMUP" --runs "$RUNS" --export-json "$json" "$@" >"$TMP/hf-$name.out" 2>&1 ||
        { cat "$TMP/hf-$name.out" >&2; return 1; }
}
run_side() { # side round
    local j=$TMP/start-$1-$2.json
    case $1 in
    shoal) hf "$1" "$j" -n shoal "$SHOAL run --rm bb:1 true" ;;
    shoal-rt) hf "$1" "$j" -n shoal-rt "$SHOAL_RT run --data-root $TMP/shoal bb:1 true" ;;
    shoal-rt-loop) # cycle times in ms, one per line, as hyperfine's JSON (seconds)
        "$SHOAL_RT" bench --data-root "$TMP/shoal" --runs "$RUNS" --warmup "$WARMUP" bb:1 true \
            >"$TMP/loop.out" 2>"$TMP/hf-loop.out" || { cat "$TMP/hf-loop.out" >&2; return 1; }
        python3 -c 'import json, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")]
json.dump({"results": [{"command": "shoal-rt-loop", "times": [float(r[0]) / 1000 for r in rows]}]}, open(sys.argv[2], "w"))' \
            "$TMP/loop.out" "$j" ;;
    crun) # both crun variants inside one unshare; the unshare is not timed
        nounified hyperfine -N --style basic --warmup "$WARMUP" --runs "$RUNS" --export-json "$j" \
            -n crun "crun run --bundle $TMP/bundle $TAG-lat" \
            -n crun-nocg "crun --cgroup-manager=disabled run --bundle $TMP/bundle $TAG-lat" \
            >"$TMP/hf-crun.out" 2>&1 || { cat "$TMP/hf-crun.out" >&2; return 1; } ;;
    runc) hf "$1" "$j" -n runc "runc run --bundle $TMP/bundle $TAG-lat" ;;
    docker) hf "$1" "$j" -n docker "$DOCKER_BIN run --rm --network none bb:1 true" ;;
    esac
}
for ((r = 0; r < ROUNDS; r++)); do
    for ((k = 0; k < ${#SIDES[@]}; k++)); do
        s=${SIDES[(k + r) % ${#SIDES[@]}]}
        log "start latency: round $((r + 1))/$ROUNDS, $s ($RUNS runs)"
        run_side "$s" "$r"
    done
done
LOAD_LAT=$(cut -d' ' -f1-3 /proc/loadavg)
[ -n "${OUT:-}" ] && mkdir -p "$OUT" && cp "$TMP"/start-*.json "$OUT"/
[ -z "$(shoal ps -aq)" ] && [ -z "$(docker ps -aq)" ] || { log "containers left after the latency runs"; exit 1; }
[ -z "$(runc list -q | grep "^$TAG")" ] || { log "runc containers left"; exit 1; }

# --- 2. PAR containers at once ---------------------------------------------
cat >"$TMP/par" <<SH
#!/bin/sh
# usage: par SIDE REP: start $PAR \`true\` containers at once; prints the wall seconds
set -e
side=\$1 rep=\$2
t0=\$(date +%s%N)
case \$side in
shoal) seq $PAR | xargs -P $PAR -I{} "$SHOAL" run --rm bb:1 true ;;
crun|runc) seq $PAR | xargs -P $PAR -I{} "\$side" run --bundle "$TMP/bundle" "$TAG-p\$rep-{}" ;;
docker) seq $PAR | xargs -P $PAR -I{} "$DOCKER_BIN" run --rm --network none bb:1 true ;;
esac
t1=\$(date +%s%N)
echo \$(((t1 - t0) / 1000000))
SH
chmod +x "$TMP/par"
PSIDES=(shoal crun runc)
[ "$PAR_DOCKER" = 1 ] && PSIDES+=(docker)
par_rep() { # side rep -> ms
    local ms
    if [ "$1" = crun ]; then ms=$(nounified "$TMP/par" "$1" "$2"); else ms=$("$TMP/par" "$1" "$2"); fi
    case $1 in
    shoal) [ -z "$(shoal ps -aq)" ] ;;
    docker) [ -z "$(docker ps -aq)" ] ;;
    *) [ -z "$("$1" list -q | grep "^$TAG")" ] ;;
    esac || { log "$1: containers left after $PAR parallel runs"; return 1; }
    echo "$ms"
}
declare -A PARMS
for s in "${PSIDES[@]}"; do log "parallel: warm-up $s"; par_rep "$s" w >/dev/null; done
for ((r = 0; r < PAR_REPS; r++)); do
    for ((k = 0; k < ${#PSIDES[@]}; k++)); do
        s=${PSIDES[(k + r) % ${#PSIDES[@]}]}
        ms=$(par_rep "$s" "$r")
        PARMS[$s]="${PARMS[$s]:-} $ms"
        log "parallel: rep $((r + 1))/$PAR_REPS $s ${ms} ms"
    done
done

# --- 3. memory -------------------------------------------------------------
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
shim_pids() { # shoal's shims (not their containers)
    local p
    for p in $(procs_matching "shoal-shim $TMP"); do
        if tr '\0' ' ' <"/proc/$p/cmdline" | grep -q "shoal-shim"; then echo "$p"; fi
    done
}
comm_pids() { # comm pid... -> those pids whose comm is comm
    local c=$1 p; shift
    for p in "$@"; do
        if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$c" ]; then echo "$p"; fi
    done
}
# shellcheck disable=SC2046
containerd_pid() { comm_pids containerd $(cat /proc/"$DOCKERD_PID"/task/*/children); }
# shellcheck disable=SC2046
dshim_pids() { comm_pids containerd-shim $(procs_matching "$TMP"); }
kbs() { for p in "$@"; do rss_kb "$p"; done | tr '\n' ' '; }
uss_kb() { awk '/^Private_(Clean|Dirty):/ {s += $2} END {print s}' "/proc/$1/smaps_rollup"; }
pss_sum() { for p in "$@"; do awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup"; done | awk '{s += $1} END {print s}'; }

MEM_SHOAL_IDLE=$(rss_kb "$SHOAL_PID")
CTD=$(containerd_pid)
MEM_DOCKER_IDLE="$(rss_kb "$DOCKERD_PID") $(rss_kb "$CTD")"
log "memory: $MEM_N sleep containers per side"
seq "$MEM_N" | xargs -P 10 -I{} "$SHOAL" run -d bb:1 sleep 1000 >/dev/null
seq "$MEM_N" | xargs -P 10 -I{} "$DOCKER_BIN" run -d --network none bb:1 sleep 1000 >/dev/null
sleep 2
SHIMS=$(shim_pids)
DSHIMS=$(dshim_pids)
[ "$(echo $SHIMS | wc -w)" = "$MEM_N" ] || { log "want $MEM_N shoal shims, have: $SHIMS"; exit 1; }
[ "$(echo $DSHIMS | wc -w)" -ge 1 ] || { log "no containerd shims found"; exit 1; }
MEM_SHOAL_N=$(rss_kb "$SHOAL_PID")
MEM_DOCKER_N="$(rss_kb "$DOCKERD_PID") $(rss_kb "$CTD")"
MEM_SHIMS=$(kbs $SHIMS)
MEM_DSHIMS=$(kbs $DSHIMS)
PSS_SHIMS=$(pss_sum $SHIMS)
USS_SHIMS=$(for p in $SHIMS; do uss_kb "$p"; done | tr '\n' ' ')
USS_DSHIMS=$(for p in $DSHIMS; do uss_kb "$p"; done | tr '\n' ' ')
PSS_DSHIMS=$(pss_sum $DSHIMS)
# shellcheck disable=SC2046
shoal container rm -f $(shoal ps -aq) >/dev/null
# shellcheck disable=SC2046
docker rm -f $(docker ps -aq) >/dev/null
[ -z "$(shim_pids)" ] || { log "shoal shims left after rm -f"; exit 1; }

# --- report ----------------------------------------------------------------
python3 - "$TMP" "$ROUNDS" "$RUNS" "$WARMUP" "$PAR" "$MEM_N" \
    "$("$SHOAL" --version)" "$(crun --version | head -1)" "$(runc --version | head -1)" \
    "$(docker version --format '{{.Server.Version}}')" "$(hyperfine --version)" "$(uname -r)" \
    "$( [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] && echo v2 || echo 'v1 (hybrid)')" "$(nproc)" \
    "$(for s in "${PSIDES[@]}"; do echo "$s:${PARMS[$s]}"; done)" \
    "$MEM_SHOAL_IDLE" "$MEM_SHOAL_N" "$MEM_SHIMS" "$MEM_DOCKER_IDLE" "$MEM_DOCKER_N" "$MEM_DSHIMS" "$PSS_SHIMS" "$PSS_DSHIMS" \
    "$USS_SHIMS" "$USS_DSHIMS" "$LOAD_LAT" <<'PY'
import glob, json, math, statistics as st, sys
(tmp, rounds, runs, warm, par, mem_n, sv, cv, rv, dv, hv, kern, cg, cpus, pars,
 s_idle, s_n, shims, d_idle, d_n, dshims, pss_s, pss_d, uss_s, uss_d, load) = sys.argv[1:]
times = {}
for f in sorted(glob.glob(f"{tmp}/start-*.json")):
    for r in json.load(open(f))["results"]:
        times.setdefault(r["command"], []).extend(t * 1000 for t in r["times"])
def p(v, q):  # nearest rank
    v = sorted(v); return v[max(0, math.ceil(q * len(v)) - 1)]
print(f"\n### start: one busybox `true` container, create → start → exit → remove")
print(f"{sv}; {cv}; {rv}; Docker {dv}; {hv}; kernel {kern}; cgroup {cg}; {cpus} CPUs")
print(f"{rounds} rounds × {runs} runs (+{warm} warm-up each), side order rotating per round\n")
print("| side | runs | mean ms | median ms | p99 ms | min ms | max ms |")
print("|---|---|---|---|---|---|---|")
order = ["shoal", "shoal-rt", "shoal-rt-loop", "crun", "crun-nocg", "runc", "docker"]
theirs = order[3:]
for k in order:
    v = times[k]
    print(f"| {k} | {len(v)} | {st.mean(v):.1f} | {st.median(v):.1f} | {p(v, .99):.1f} | {min(v):.1f} | {max(v):.1f} |")
print(f"\nload average after the latency runs: {load}")
for ours in ["shoal", "shoal-rt", "shoal-rt-loop"]:
    s = times[ours]
    print()
    for k in theirs:
        v = times[k]
        print(f"{ours}/{k}: mean {st.mean(s) / st.mean(v):.2f}x, median {st.median(s) / st.median(v):.2f}x, "
              f"p99 {p(s, .99) / p(v, .99):.2f}x")

pm = {}
for line in pars.splitlines():
    k, v = line.split(":"); pm[k] = [int(x) / 1000 for x in v.split()]
print(f"\n### start-par: {par} `true` containers started at once (xargs -P {par}), wall time to all removed\n")
print("| side | reps | median s | min s | max s | all (s) |")
print("|---|---|---|---|---|---|")
for k, v in pm.items():
    print(f"| {k} | {len(v)} | {st.median(v):.3f} | {min(v):.3f} | {max(v):.3f} | {' '.join(f'{x:.2f}' for x in v)} |")
print()
for k in pm:
    if k != "shoal":
        print(f"shoal/{k} (medians): {st.median(pm['shoal']) / st.median(pm[k]):.2f}x")

mb = lambda kb: f"{int(kb) / 1024:.1f}"
sh = [int(x) for x in shims.split()]; dsh = [int(x) for x in dshims.split()]
di = [int(x) for x in d_idle.split()]; dn = [int(x) for x in d_n.split()]
print(f"\n### memory (VmRSS, MiB)\n")
print("| what | shoal | docker | shoal/docker |")
print("|---|---|---|---|")
print(f"| one shim (median of {len(sh)} shoal / {len(dsh)} containerd-shim-runc-v2) | {mb(st.median(sh))} | {mb(st.median(dsh))} | {st.median(sh) / st.median(dsh):.2f}x |")
print(f"| shims, min–max | {mb(min(sh))}–{mb(max(sh))} | {mb(min(dsh))}–{mb(max(dsh))} | |")
us = [int(x) for x in uss_s.split()]; ud = [int(x) for x in uss_d.split()]
print(f"| one shim's private pages (USS, median) | {mb(st.median(us))} | {mb(st.median(ud))} | {st.median(us) / st.median(ud):.2f}x |")
print(f"| daemon idle (docker: dockerd + containerd) | {mb(s_idle)} | {mb(sum(di))} ({mb(di[0])} + {mb(di[1])}) | {int(s_idle) / sum(di):.2f}x |")
print(f"| daemon with {mem_n} `sleep` containers | {mb(s_n)} | {mb(sum(dn))} ({mb(dn[0])} + {mb(dn[1])}) | {int(s_n) / sum(dn):.2f}x |")
print(f"| all shims, PSS sum (shared pages split) | {mb(pss_s)} | {mb(pss_d)} | {int(pss_s) / int(pss_d):.2f}x |")
print(f"| daemon + all shims (RSS), {mem_n} containers | {mb(int(s_n) + sum(sh))} | {mb(sum(dn) + sum(dsh))} | {(int(s_n) + sum(sh)) / (sum(dn) + sum(dsh)):.2f}x |")
PY
