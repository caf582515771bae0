#!/usr/bin/env python3
"""raftwrites: committed writes per second on 3 managers vs etcd 3.4 (perf-anchors B3).

    apt-get install -y etcd-server        # once
    sudo tests/benches/raftwrites.py      # builds target/release/shoal first

Both clusters run on simulated hosts of one lab (network namespaces on one
bridge, one disk, fsync on for both: shoal's redb commits and etcd's WAL):
shoal's 3 managers on m1..m3, etcd's 3 members on e1..e3. One Python load
client (the same handicap for both) with CLIENTS threads, each with its own
keep-alive connection, writes for SECONDS seconds in all, split into ROUNDS
rounds in which the sides take turns (so that a change of load on the
machine hits every side alike):
  shoal secret:  POST /secrets/create (a new name, 256 bytes of data) on the
         leader's API socket — one raft entry each, acknowledged once committed
         and applied: the same shape of write as etcd's;
  shoal service: POST /services/create (a service with 0 replicas);
  etcd:  POST /v3/kv/put (8-byte key, 256-byte value) through etcd's JSON
         gateway on the leader — acknowledged once committed.
Reports writes/s and p50/p99 latency at 1 and 64 clients, and the ratio.

Also reports the servers' CPU time per write (all three members' user +
system time over the run, divided by the writes).

Env: SECONDS (10), ROUNDS (5), CLIENTS (1,64), SIDES (secret,service,etcd),
SHOAL (binary), ETCD (/usr/bin/etcd), THREADS (unset: every server runs as
many threads as the machine has cores; N: each runs N, shoal's daemons by
TOKIO_WORKER_THREADS and etcd by GOMAXPROCS, as if each simulated host had N
cores of its own).
"""

import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import benchlab

SECONDS = float(os.environ.get("SECONDS_PER_RUN", os.environ.get("SECONDS", "10")))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
ETCD = os.environ.get("ETCD", "/usr/bin/etcd")
# SIDES: which writers to run (default all): any of secret, service, etcd.
SIDES = os.environ.get("SIDES", "secret,service,etcd").split(",")
CLIENT_COUNTS = [int(c) for c in os.environ.get("CLIENTS", "1,64").split(",")]


LAB_ = benchlab.Lab("shoal-raftwrites-")
SHOAL, LAB, ENV, sh = LAB_.shoal, LAB_.root, LAB_.env, LAB_.sh
if os.environ.get("THREADS"):
    # The daemons that `machine create` starts and etcd inherit these.
    ENV.update(TOKIO_WORKER_THREADS=os.environ["THREADS"], GOMAXPROCS=os.environ["THREADS"])


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("shoal", timeout=30)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(self.path)
        self.sock = s


def machine_addr(name):
    for m in json.loads(sh("machine", "ls", "--format", "json").stdout):
        if m["Name"] == name:
            return m["Address"]
    sys.exit(f"raftwrites: no machine {name}")


def cpu_seconds(pids):
    """User + system CPU seconds used so far by these processes."""
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def server_pids(pattern):
    out = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def run_load(clients, make_conn, request, pids=(), seconds=SECONDS):
    """CLIENTS threads writing for `seconds`; returns the raw outcome."""
    latencies = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    errors = []

    def worker(wid):
        conn = make_conn()
        mine = []
        i = 0
        while time.monotonic() < stop:
            method, path, body = request(wid, i)
            t = time.monotonic()
            try:
                conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                if resp.status >= 300:
                    errors.append(resp.status)
                    continue
            except (OSError, http.client.HTTPException) as e:
                errors.append(str(e))
                conn = make_conn()
                continue
            mine.append(time.monotonic() - t)
            i += 1
        with lock:
            latencies.extend(mine)

    cpu0 = cpu_seconds(pids)
    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(pids) - cpu0
    if errors:
        print(f"  ({len(errors)} failed requests, first: {errors[0]})")
    return {"elapsed": elapsed, "latencies": latencies, "cpu": cpu}


def summarize(runs):
    """(writes/s, p50 ms, p99 ms, server CPU ms per write) over several runs."""
    latencies = sorted(l for r in runs for l in r["latencies"])
    if not latencies:
        return 0.0, 0.0, 0.0, 0.0
    elapsed = sum(r["elapsed"] for r in runs)
    cpu = sum(r["cpu"] for r in runs)
    p = lambda q: latencies[min(len(latencies) - 1, int(q * (len(latencies) - 1)))] * 1000
    return len(latencies) / elapsed, p(0.5), p(0.99), cpu * 1000 / len(latencies)


def main():
    if os.geteuid() != 0:
        sys.exit("raftwrites: needs root (network namespaces)")
    if not shutil.which(ETCD):
        sys.exit("raftwrites: etcd not found (apt-get install etcd-server)")
    procs = []
    try:
        # shoal: 3 managers.
        for m in ["m1", "m2", "m3"]:
            sh("machine", "create", m)
        m1 = machine_addr("m1")
        sh("machine", "ssh", "m1", "--", SHOAL, "swarm", "init", "--advertise-addr", m1)
        token = sh("machine", "ssh", "m1", "--", SHOAL, "swarm", "join-token", "-q", "manager").stdout.strip()
        for m in ["m2", "m3"]:
            sh("machine", "ssh", m, "--", SHOAL, "swarm", "join", "--token", token, f"{m1}:2377")
        shoal_socket = os.path.join(LAB, "machines", "m1", "shoal.sock")

        # etcd: 3 members.
        members = {}
        for e in ["e1", "e2", "e3"]:
            sh("machine", "create", e)
            members[e] = machine_addr(e)
        cluster = ",".join(f"{e}=http://{a}:2380" for e, a in members.items())
        for e, a in members.items():
            data = os.path.join(LAB, "etcd-" + e)
            log = open(os.path.join(LAB, f"etcd-{e}.log"), "w")
            procs.append(subprocess.Popen(
                [SHOAL, "machine", "ssh", e, "--", ETCD, "--name", e, "--data-dir", data,
                 "--listen-peer-urls", f"http://{a}:2380", "--initial-advertise-peer-urls", f"http://{a}:2380",
                 "--listen-client-urls", f"http://{a}:2379", "--advertise-client-urls", f"http://{a}:2379",
                 "--initial-cluster", cluster, "--initial-cluster-state", "new"],
                env=ENV, stdout=log, stderr=subprocess.STDOUT))
        e1 = members["e1"]

        def etcd_status():
            try:
                c = http.client.HTTPConnection(e1, 2379, timeout=2)
                c.request("POST", "/v3/maintenance/status", body="{}")
                r = c.getresponse()
                return json.loads(r.read()) if r.status == 200 else None
            except OSError:
                return None

        end = time.monotonic() + 30
        while not (etcd_status() or {}).get("leader"):
            if time.monotonic() > end:
                sys.exit("raftwrites: etcd did not elect a leader within 30s")
            time.sleep(0.2)
        leader_id = etcd_status()["leader"]
        etcd_leader = e1
        for a in members.values():
            c = http.client.HTTPConnection(a, 2379, timeout=2)
            c.request("POST", "/v3/maintenance/status", body="{}")
            st = json.loads(c.getresponse().read())
            if st["header"]["member_id"] == leader_id:
                etcd_leader = a

        value = base64.b64encode(b"v" * 256).decode()

        def etcd_req(w, i):
            key = base64.b64encode(f"k{w:03d}{i:04d}"[-8:].encode()).decode()
            return "POST", "/v3/kv/put", json.dumps({"key": key, "value": value})

        data = base64.b64encode(b"v" * 256).decode()

        def secret_req(w, i):
            return "POST", "/secrets/create", json.dumps({"Name": f"k{w}-{i}-{run_id[0]}", "Data": data})

        def shoal_req(w, i):
            return "POST", "/services/create", json.dumps({
                "Name": f"c{w}-{i}-{run_id[0]}",
                "TaskTemplate": {"ContainerSpec": {"Image": "bench:1", "Args": ["true"]}},
                "Mode": {"Replicated": {"Replicas": 0}},
            })

        shoal_pids = server_pids(f"daemon.*{LAB}/machines/m[123]")
        etcd_pids = server_pids(f"--data-dir {LAB}/etcd-")
        none = (0.0, 0.0, 0.0, 0.0)
        run_id = [0]
        for clients in CLIENT_COUNTS:
            run_id[0] += 1
            sides = {
                "secret": (lambda: UnixHTTPConnection(shoal_socket), secret_req, shoal_pids),
                "service": (lambda: UnixHTTPConnection(shoal_socket), shoal_req, shoal_pids),
                "etcd": (lambda: http.client.HTTPConnection(etcd_leader, 2379, timeout=30), etcd_req, etcd_pids),
            }
            runs = {side: [] for side in SIDES}
            for round_ in range(ROUNDS):
                for side in SIDES:
                    conn, req, pids = sides[side]
                    run_id[0] += 1
                    runs[side].append(run_load(clients, conn, req, pids, SECONDS / ROUNDS))
            secret, service, e = (summarize(runs[s]) if s in runs else none for s in ("secret", "service", "etcd"))
            for name, r in [("shoal secret", secret), ("shoal service", service), ("etcd put", e)]:
                if r is not none:
                    print(f"{clients:>3} clients: {name:<14} {r[0]:8.0f} w/s (p50 {r[1]:.1f} ms, p99 {r[2]:.1f} ms,"
                          f" servers' CPU {r[3]:.2f} ms/write)", flush=True)
            if e is not none:
                print(f"{clients:>3} clients: shoal/etcd  secret {secret[0] / max(e[0], 1e-9):.2f}x  "
                      f"service {service[0] / max(e[0], 1e-9):.2f}x", flush=True)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["pkill", "-f", "--", f"--data-dir {LAB}"], check=False)
        sh("lab", "down", check=False)
        shutil.rmtree(LAB, ignore_errors=True)


if __name__ == "__main__":
    main()
