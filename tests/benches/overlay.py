#!/usr/bin/env python3
"""overlay: the swarm's container networks, measured through the whole system (issue 13).

    apt-get install -y iperf3 wrk   # once
    sudo tests/benches/overlay.py   # builds target/release/shoal first ($SHOAL to skip)

A lab of 2 simulated hosts (`lab up --nodes 2`); a stack with an `iperf3 -s`
service, a busybox `httpd` service (1 replica) and a client service, on one
overlay network. Every client runs in the client task's own network namespace
(its sandbox, entered with nsenter: the host's iperf3, wrk and python3 in the
container's network), the servers in their tasks' containers.

  throughput: iperf3 client task -> server task on the other host, over the
              overlay (VXLAN), vs iperf3 between the two hosts' own addresses
              (the underlay), TCP, 1 stream, SECONDS each, ROUNDS interleaved.
  latency:    TCP round trips (1 byte each way, 5000 per run) over the same
              two paths: p50/p99.
  vip:        wrk (1 thread, 10 keep-alive connections) against the web
              service's virtual IP vs the same task's own address, same client,
              same server (Python's HTTP/1.1 server in the web task's network
              namespace: busybox httpd closes every connection, which would
              measure port exhaustion): requests/s and p99.
  propagation: `service scale web=N+1` returning -> the new task's address in
              `tasks.web` as the client's resolver answers on the other host,
              TRIALS trials: p50/p99.

Env: ROUNDS (3), SECONDS (10), TRIALS (20), SHOAL (a built binary), PARTS
(throughput,latency,vip,propagation: the parts to run).
"""

import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlab import ROOT, Lab  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "3"))
SECONDS = int(os.environ.get("SECONDS", "10"))
TRIALS = int(os.environ.get("TRIALS", "20"))
PARTS = os.environ.get("PARTS", "throughput,latency,vip,propagation").split(",")

STACK = """
services:
  ips:
    image: bench:1
    command: ["/iperf3", "-s"]
    networks: [net]
  web:
    image: bench:1
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    networks: [net]
  client:
    image: bench:1
    command: ["sleep", "1000000"]
    networks: [net]
networks:
  net: {}
"""

# An HTTP/1.1 server with keep-alive: `keepalive_server.py PORT`.
HTTP = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        body = b"hello from shoal\n"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
"""

# A TCP ping-pong: `rr.py server PORT` or `rr.py client ADDR PORT COUNT` (prints the
# round trips in microseconds, one per line).
RR = r"""
import socket, sys, time
if sys.argv[1] == "server":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[2]))); s.listen(1)
    print("ready", flush=True)
    c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        b = c.recv(1)
        if not b: break
        c.sendall(b)
else:
    c = socket.create_connection((sys.argv[2], int(sys.argv[3])))
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out = []
    for _ in range(int(sys.argv[4])):
        t = time.perf_counter_ns(); c.sendall(b"x"); c.recv(1); out.append((time.perf_counter_ns() - t) // 1000)
    print("\n".join(map(str, out)))
"""


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


def main():
    if os.geteuid() != 0:
        sys.exit("run as root: the lab makes namespaces and devices")
    for tool in ["iperf3", "wrk", "nsenter"]:
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            sys.exit(f"{tool} is missing: apt-get install -y iperf3 wrk")
    lab = Lab("shoal-bench-overlay-")
    try:
        run(lab)
    finally:
        lab.sh("lab", "down", check=False)


def rootfs(d):
    """busybox with every applet, the host's iperf3 (and its libraries), a web root."""
    os.makedirs(f"{d}/bin")
    os.makedirs(f"{d}/www")
    os.makedirs(f"{d}/etc")
    os.makedirs(f"{d}/tmp")
    os.chmod(f"{d}/tmp", 0o1777)
    subprocess.run(["cp", "/bin/busybox", f"{d}/bin/busybox"], check=True)
    for applet in subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout.split():
        if applet != "busybox" and not os.path.exists(f"{d}/bin/{applet}"):
            os.symlink("busybox", f"{d}/bin/{applet}")
    with open(f"{d}/www/index.html", "w") as f:
        f.write("hello from shoal\n")
    with open(f"{d}/etc/passwd", "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")
    with open(f"{d}/etc/group", "w") as f:
        f.write("root:x:0:\n")
    iperf = subprocess.run(["which", "iperf3"], capture_output=True, text=True).stdout.strip()
    subprocess.run(["cp", iperf, f"{d}/iperf3"], check=True)
    ldd = subprocess.run(["ldd", iperf], capture_output=True, text=True).stdout
    for line in ldd.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            dest = d + path
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            subprocess.run(["cp", "-L", path, dest], check=True)


def run(lab):
    lab.sh("lab", "up", "--nodes", "2")
    machines = json.loads(lab.sh("machine", "ls", "--format", "json").stdout)
    addr = {m["Name"]: m["Address"] for m in machines}
    fs = os.path.join(lab.root, "rootfs")
    rootfs(fs)
    for m in addr:
        lab.sh("machine", "ssh", m, "--", "shoal", "image", "import", fs, "bench:1")
    compose = os.path.join(lab.root, "stack.yml")
    with open(compose, "w") as f:
        f.write(STACK)
    lab.sh("machine", "ssh", "n1", "--", "shoal", "stack", "deploy", "-c", compose, "b")

    def ssh(m, *args, check=True):
        return lab.sh("machine", "ssh", m, "--", *args, check=check)

    nodes = json.loads(ssh("n1", "shoal", "node", "ls", "--format", "json").stdout)
    hostname = {n["ID"]: n["Description"]["Hostname"] for n in nodes}

    def tasks(service):
        out = json.loads(ssh("n1", "shoal", "service", "ps", service, "--format", "json").stdout)
        return [
            {
                "id": t["ID"],
                "node": hostname[t["NodeID"]],
                "addr": t["NetworksAttachments"][0]["Addresses"][0].split("/")[0],
                "container": t["Status"]["ContainerStatus"]["ContainerID"],
            }
            for t in out
            if t["Status"]["State"] == "running" and t["DesiredState"] == "running"
        ]

    client = tasks("b_client")[0]
    # The servers on the other host than the client: scale until one is there.
    for service in ["b_ips", "b_web"]:
        n = 1
        while not any(t["node"] != client["node"] for t in tasks(service)):
            n += 1
            ssh("n1", "shoal", "service", "scale", f"{service}={n}")
        keep = [t for t in tasks(service) if t["node"] != client["node"]][0]
        print(f"{service}: task on {keep['node']}, client on {client['node']}", flush=True)
    ips = [t for t in tasks("b_ips") if t["node"] != client["node"]][0]
    # One web task, on the other host: the VIP has one backend, the same as the direct path.
    ssh("n1", "shoal", "service", "scale", "b_web=1")
    web = tasks("b_web")[0]
    netns = lambda t: os.path.join(lab.root, "machines", t["node"], "data", "mesh", "netns", t["id"])  # noqa: E731
    machine_ns = lambda m: ["nsenter", f"--net=/proc/{machine_pid(lab, m)}/ns/net"]  # noqa: E731
    in_client = ["nsenter", f"--net={netns(client)}"]
    vip = resolve(in_client, client, "web")
    print(f"client {client['addr']} on {client['node']}; iperf3 server {ips['addr']} on {ips['node']}; "
          f"web {web['addr']} on {web['node']}, VIP {vip}", flush=True)

    other = ips["node"]
    gbps, lat, rps, p99, waits = {}, {}, {}, {}, []
    if "throughput" in PARTS:
        # The underlay's server: iperf3 in the other host's own namespace.
        under_server = subprocess.Popen(machine_ns(other) + ["iperf3", "-s"], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        paths = {
            "overlay": in_client + ["iperf3", "-c", ips["addr"]],
            "underlay": machine_ns(client["node"]) + ["iperf3", "-c", addr[other]],
        }
        gbps = {k: [] for k in paths}
        try:
            for r in range(ROUNDS):
                order = list(paths) if r % 2 == 0 else list(reversed(paths))
                for k in order:
                    out = subprocess.run(paths[k] + ["-t", str(SECONDS), "-J"], capture_output=True, text=True)
                    bps = json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"]
                    gbps[k].append(bps / 1e9)
                    print(f"  iperf3 {k}: {bps / 1e9:.2f} Gbit/s", flush=True)
        finally:
            under_server.kill()

    if "latency" in PARTS:
        # Round trips: the server in the iperf3 task's namespace and in the other host's.
        rr = os.path.join(lab.root, "rr.py")
        with open(rr, "w") as f:
            f.write(RR)
        lat = {}
        for k, server_ns, client_ns, target in [
            ("overlay", ["nsenter", f"--net={netns(ips)}"], in_client, ips["addr"]),
            ("underlay", machine_ns(other), machine_ns(client["node"]), addr[other]),
        ]:
            server = subprocess.Popen(server_ns + ["python3", rr, "server", "7777"], stdout=subprocess.PIPE, text=True)
            server.stdout.readline()
            out = subprocess.run(client_ns + ["python3", rr, "client", target, "7777", "5000"],
                                 capture_output=True, text=True, check=True)
            server.kill()
            us = [int(x) for x in out.stdout.split()]
            lat[k] = (pct(us, 50), pct(us, 99))
            print(f"  round trip {k}: p50 {lat[k][0]} us, p99 {lat[k][1]} us", flush=True)

    if "vip" in PARTS:
        # VIP vs the task's own address, one keep-alive server in the web task's namespace.
        http = os.path.join(lab.root, "keepalive_server.py")
        with open(http, "w") as f:
            f.write(HTTP)
        server = subprocess.Popen(["nsenter", f"--net={netns(web)}", "python3", http, "8081"], stderr=subprocess.DEVNULL)
        time.sleep(1)
        wrk = {"vip": vip, "direct": web["addr"]}
        rps = {k: [] for k in wrk}
        p99 = {k: [] for k in wrk}
        try:
            for r in range(ROUNDS):
                order = list(wrk) if r % 2 == 0 else list(reversed(wrk))
                for k in order:
                    out = subprocess.run(in_client + ["wrk", "-t1", "-c10", f"-d{SECONDS}s", "--latency",
                                                      f"http://{wrk[k]}:8081/"], capture_output=True, text=True, check=True)
                    lines = out.stdout.splitlines()
                    rps[k].append(float(next(x for x in lines if x.startswith("Requests/sec")).split()[1]))
                    p99[k].append(ms(next(x for x in lines if x.strip().startswith("99%")).split()[1]))
                    print(f"  wrk {k}: {rps[k][-1]:.0f} req/s, p99 {p99[k][-1]:.2f} ms", flush=True)
        finally:
            server.kill()

    if "propagation" in PARTS:
        # Propagation: scale up by one, time until the client's resolver lists the new task.
        waits = []
        n = 1
        for _ in range(TRIALS):
            before = set(t["addr"] for t in tasks("b_web"))
            ssh("n1", "shoal", "service", "scale", f"b_web={n + 1}")
            t0 = time.monotonic()
            n += 1
            new = set(t["addr"] for t in tasks("b_web")) - before
            while True:
                listed = set(resolve_all(in_client, client, "tasks.web"))
                if new and new <= listed:
                    break
                if time.monotonic() - t0 > 60:
                    sys.exit(f"tasks.web never listed {new}: {listed}")
                if not new:
                    new = set(t["addr"] for t in tasks("b_web")) - before
                time.sleep(0.005)
            waits.append((time.monotonic() - t0) * 1000)
            print(f"  propagation: {waits[-1]:.0f} ms", flush=True)

    med = statistics.median
    print("\nsummary")
    if gbps:
        print(f"throughput overlay {med(gbps['overlay']):.2f} Gbit/s, underlay {med(gbps['underlay']):.2f} Gbit/s: "
              f"{med(gbps['overlay']) / med(gbps['underlay']):.2f}x")
    if lat:
        print(f"round trip p50/p99 overlay {lat['overlay'][0]}/{lat['overlay'][1]} us, "
              f"underlay {lat['underlay'][0]}/{lat['underlay'][1]} us")
    if rps:
        print(f"vip {med(rps['vip']):.0f} req/s p99 {med(p99['vip']):.2f} ms, direct {med(rps['direct']):.0f} req/s "
              f"p99 {med(p99['direct']):.2f} ms: {med(rps['vip']) / med(rps['direct']):.2f}x, "
              f"added p99 {med(p99['vip']) - med(p99['direct']):.2f} ms")
    if waits:
        print(f"propagation p50 {pct(waits, 50):.0f} ms, p99 {pct(waits, 99):.0f} ms over {len(waits)} trials")


def ms(s):
    if s.endswith("us"):
        return float(s[:-2]) / 1000
    if s.endswith("ms"):
        return float(s[:-2])
    if s.endswith("s"):
        return float(s[:-1]) * 1000
    return float(s)


def machine_pid(lab, m):
    with open(os.path.join(lab.root, "machines", m, "daemon.pid")) as f:
        return int(f.read().strip())


def resolve_all(ns, task, name):
    """The addresses the task's network resolver answers for `name` (busybox nslookup)."""
    out = subprocess.run(ns + ["busybox", "nslookup", name, gateway(task)], capture_output=True, text=True)
    return [l.split(":", 1)[1].strip() for l in out.stdout.splitlines()
            if l.startswith("Address:") and ":53" not in l]


def resolve(ns, task, name):
    found = resolve_all(ns, task, name)
    if not found:
        sys.exit(f"{name} does not resolve in the client")
    return found[0]


def gateway(task):
    a = task["addr"].split(".")
    return ".".join(a[:3] + ["1"])


if __name__ == "__main__":
    main()
