#!/usr/bin/env bash
# compose200: load + validate + merge + interpolate + render a 200-service
# compose file with anchors and merge keys plus 3 override files:
# `shoal stack config` vs `docker stack config` (the docker CLI's own loader),
# same files, same run, interleaved by hyperfine.
#
#   tests/benches/compose200.sh            # RUNS=30 by default
#
# Env: RUNS, SHOAL (binary; default: build target/release/shoal), DOCKER
# (client with `stack config`, default: docker on PATH).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${RUNS:-30}
DOCKER=${DOCKER:-docker}
command -v hyperfine >/dev/null || { echo "compose200: needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }
if [ -z "${SHOAL:-}" ]; then
    (cd "$ROOT" && cargo build --release -p shoal -p shoal-runtime >&2)
    SHOAL=$ROOT/target/release/shoal
fi
TMP=$(mktemp -d /tmp/compose200.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

python3 - "$TMP" <<'PY'
import sys, os
d = sys.argv[1]
with open(os.path.join(d, "base.yml"), "w") as f:
    f.write('version: "3.9"\n')
    f.write('x-common: &common\n  image: "busybox:${TAG:-1.36}"\n  environment:\n    LOG_LEVEL: info\n    REGION: "${REGION:-eu}"\n  labels:\n    team: core\n  deploy:\n    replicas: 2\n    restart_policy:\n      condition: on-failure\n      delay: 5s\n    resources:\n      limits:\n        cpus: "0.5"\n        memory: 128M\n  stop_grace_period: 30s\n')
    f.write("services:\n")
    for i in range(200):
        f.write(f"  svc{i:03d}:\n    <<: *common\n    command: [\"sh\", \"-c\", \"echo svc{i:03d}; sleep 3600\"]\n")
        f.write(f"    hostname: svc{i:03d}\n")
for k in range(3):
    with open(os.path.join(d, f"override{k}.yml"), "w") as f:
        f.write('version: "3.9"\nservices:\n')
        for i in range(k, 200, 3):
            f.write(f"  svc{i:03d}:\n    environment:\n      OVERRIDE_{k}: \"yes\"\n    deploy:\n      replicas: {k + 3}\n")
PY

files=(-c "$TMP/base.yml" -c "$TMP/override0.yml" -c "$TMP/override1.yml" -c "$TMP/override2.yml")
# Both must accept the files and agree on the result's size of the work.
"$SHOAL" stack config "${files[@]}" > "$TMP/shoal.out"
"$DOCKER" stack config "${files[@]}" > "$TMP/docker.out"
grep -c 'OVERRIDE_' "$TMP/shoal.out" > "$TMP/n.shoal"
grep -c 'OVERRIDE_' "$TMP/docker.out" > "$TMP/n.docker"
cmp -s "$TMP/n.shoal" "$TMP/n.docker" || { echo "compose200: the two outputs differ in overrides applied" >&2; exit 1; }

hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$TMP/h.json" \
    -n shoal "$SHOAL stack config ${files[*]}" \
    -n docker "$DOCKER stack config ${files[*]}" >&2
python3 - "$TMP/h.json" "$("$SHOAL" --version)" "$("$DOCKER" --version)" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
s, d = r["shoal"], r["docker"]
print("### compose200: 200 services, anchors + merge keys, 3 override files")
print(f"{sys.argv[2]}; {sys.argv[3]}\n")
print("| side | runs | mean ms | median ms | min ms | max ms |")
print("|---|---|---|---|---|---|")
for name, x in (("shoal stack config", s), ("docker stack config", d)):
    print(f"| {name} | {len(x['times'])} | {x['mean']*1e3:.1f} | {x['median']*1e3:.1f} | {x['min']*1e3:.1f} | {x['max']*1e3:.1f} |")
print(f"\nratio shoal/docker (mean): {s['mean']/d['mean']:.2f}x, (median): {s['median']/d['median']:.2f}x")
PY
