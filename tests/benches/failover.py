#!/usr/bin/env python3
"""failover: leader failover and node-down reschedule on simulated hosts.

    sudo tests/benches/failover.py            # builds target/release/shoal first

1. Leader failover (perf-anchors B5): a lab of 3 managers; a client writes a
   service every 10 ms through one surviving manager's API; the leader's
   daemon is killed with SIGKILL; the gap is the time from the kill to the
   first acknowledged write after it. TRIALS trials (20); the killed manager
   restarts and catches up between trials (then SETTLE s). Reports p50/p99/max.
2. Node down + reschedule (B6): a worker holding 10 tasks is frozen with
   SIGSTOP; time until the managers mark it down, and until 10 replacement
   tasks run elsewhere.
3. Manager memory: VmRSS of the leader's daemon idle, then holding 1,000
   services (replicas 0).

4. Docker Swarm's leader failover, live (unless DOCKER_TRIALS=0): 3 dockerd
   (Debian docker.io 20.10) on three more simulated hosts, one data root each,
   a swarm of 3 managers; the same kill -9 of the leader's dockerd, then
   `docker network create -d overlay` (a raft write) through a survivor until
   it succeeds. DOCKER_TRIALS trials (5: each takes Swarm's 10-20 s).

Env: TRIALS (20), SETTLE (3), DOCKER_TRIALS (5), SHOAL (binary; default: cargo
build --release), DOCKERD (/usr/sbin/dockerd).
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

import benchlab

TRIALS = int(os.environ.get("TRIALS", "20"))
# Seconds between a restarted manager catching up and the next kill: failures
# are measured from a steady cluster, not one still settling from the last.
SETTLE = float(os.environ.get("SETTLE", "3"))
DOCKER_TRIALS = int(os.environ.get("DOCKER_TRIALS", "5"))
DOCKERD = os.environ.get("DOCKERD", "/usr/sbin/dockerd")


LAB_ = benchlab.Lab("shoal-failover-")
SHOAL, LAB, ENV, sh = LAB_.shoal, LAB_.root, LAB_.env, LAB_.sh


def on(m, *args, check=True):
    return sh("machine", "ssh", m, "--", SHOAL, *args, check=check)


def http(m, method, path, body=""):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(os.path.join(LAB, "machines", m, "shoal.sock"))
        data = body.encode()
        s.sendall(
            f"{method} {path} HTTP/1.0\r\nHost: shoal\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode() + data
        )
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except OSError:
        return 0, ""
    finally:
        s.close()
    head, _, rest = out.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ")[1]), rest.decode()
    except (IndexError, ValueError):
        return 0, ""


def leader(m):
    status, body = http(m, "GET", "/nodes")
    if status != 200:
        return None
    for n in json.loads(body):
        if n.get("ManagerStatus", {}).get("Leader"):
            return n["Description"]["Hostname"]
    return None


def pid(m):
    with open(os.path.join(LAB, "machines", m, "daemon.pid")) as f:
        return int(f.read().strip())


def rss_kib(p):
    with open(f"/proc/{p}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def service(name, replicas=0, image="none:1"):
    return json.dumps({
        "Name": name,
        "TaskTemplate": {"ContainerSpec": {"Image": image, "Args": ["sleep", "3600"]}},
        "Mode": {"Replicated": {"Replicas": replicas}},
    })


def wait(what, f, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = f()
        if v:
            return v
        time.sleep(0.05)
    sys.exit(f"failover: timed out waiting for {what}")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


DOCKERDS = ["d1", "d2", "d3"]


def docker(d, *args, check=True, timeout=60):
    sock = os.path.join(LAB, f"docker-{d}", "docker.sock")
    return subprocess.run(["docker", "-H", f"unix://{sock}", *args], check=check, capture_output=True, text=True,
                          timeout=timeout)


def start_dockerd(d):
    root = os.path.join(LAB, f"docker-{d}")
    os.makedirs(root, exist_ok=True)
    cmd = (f"nohup {DOCKERD} --data-root {root}/data --exec-root {root}/exec --pidfile {root}/docker.pid "
           f"-H unix://{root}/docker.sock --bridge=none --iptables=false --ip-masq=false "
           f"--userland-proxy=false >> {root}/log 2>&1 &")
    sh("machine", "ssh", d, "--", "sh", "-c", cmd)
    wait(f"dockerd on {d}", lambda: docker(d, "info", check=False).returncode == 0, 60)


def docker_leader():
    for d in DOCKERDS:
        try:
            out = docker(d, "node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}", check=False, timeout=5)
        except subprocess.TimeoutExpired:
            continue
        for line in out.stdout.splitlines():
            host, _, status = line.partition(" ")
            if status == "Leader":
                return host
    return None


def docker_failover():
    if not shutil.which("docker") or not os.path.exists(DOCKERD):
        print("docker failover: skipped (docker CLI or dockerd missing)")
        return
    addrs = {}
    for d in DOCKERDS:
        sh("machine", "create", d)
        addrs[d] = next(m["Address"] for m in json.loads(sh("machine", "ls", "--format", "json").stdout)
                        if m["Name"] == d)
        start_dockerd(d)
    docker("d1", "swarm", "init", "--advertise-addr", addrs["d1"])
    token = docker("d1", "swarm", "join-token", "-q", "manager").stdout.strip()
    for d in DOCKERDS[1:]:
        docker(d, "swarm", "join", "--token", token, "--advertise-addr", addrs[d], f"{addrs['d1']}:2377")
    gaps = []
    for trial in range(DOCKER_TRIALS):
        lead = wait("a Docker leader", docker_leader)
        client = next(d for d in DOCKERDS if d != lead)
        with open(os.path.join(LAB, f"docker-{lead}", "docker.pid")) as f:
            os.kill(int(f.read().strip()), 9)
        killed = time.monotonic()
        n = 0
        while True:
            n += 1
            try:
                r = docker(client, "network", "create", "-d", "overlay", f"f{trial}-{n}", check=False, timeout=60)
                if r.returncode == 0:
                    break
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.05)
        gaps.append(time.monotonic() - killed)
        print(f"docker trial {trial + 1}: killed {lead}, write through {client} after {gaps[-1] * 1000:.0f} ms",
              flush=True)
        subprocess.run(["pkill", "-9", "-f", "--", os.path.join(LAB, f"docker-{lead}", "exec")], check=False)
        start_dockerd(lead)
        def back():
            out = docker(client, "node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}", check=False)
            return f"{lead} Reachable" in out.stdout.splitlines()

        wait(f"{lead} back as a manager", back, 120)
        time.sleep(SETTLE)
    print(f"docker failover ms over {len(gaps)} trials: p50 {pct(gaps, 50) * 1000:.0f}  "
          f"p99 {pct(gaps, 99) * 1000:.0f}  max {max(gaps) * 1000:.0f}  mean {statistics.mean(gaps) * 1000:.0f}")


def main():
    if os.geteuid() != 0:
        sys.exit("failover: needs root (network namespaces)")
    try:
        sh("lab", "up", "--nodes", "4", "--managers", "3")
        managers = ["n1", "n2", "n3"]
        gaps = []
        seq = 0
        for trial in range(TRIALS):
            lead = wait("a leader", lambda: leader("n1") or leader("n2") or leader("n3"))
            client = next(m for m in managers if m != lead)
            os.kill(pid(lead), 9)
            killed = time.monotonic()
            while True:
                seq += 1
                status, _ = http(client, "POST", "/services/create", service(f"f{seq}"))
                if status == 201:
                    break
                time.sleep(0.01)
            gaps.append(time.monotonic() - killed)
            sh("machine", "start", lead)
            wait("the old leader to catch up", lambda: leader(lead) is not None and leader(lead) != lead)
            time.sleep(SETTLE)
            print(f"trial {trial + 1}: killed {lead}, write through {client} after {gaps[-1] * 1000:.0f} ms", flush=True)
        print(f"failover ms over {len(gaps)} trials: p50 {pct(gaps, 50) * 1000:.0f}  "
              f"p99 {pct(gaps, 99) * 1000:.0f}  max {max(gaps) * 1000:.0f}  "
              f"mean {statistics.mean(gaps) * 1000:.0f}")

        # Node down + reschedule: n4 (a worker) holds 10 tasks.
        rootfs = os.path.join(LAB, "rootfs")
        os.makedirs(os.path.join(rootfs, "bin"), exist_ok=True)
        busybox = shutil.which("busybox")
        shutil.copy(busybox, os.path.join(rootfs, "bin", "busybox"))
        for tool in ["sh", "sleep"]:
            os.symlink("busybox", os.path.join(rootfs, "bin", tool))
        for m in ["n1", "n2", "n3", "n4"]:
            on(m, "image", "import", rootfs, "bench:1")
        lead = wait("a leader", lambda: leader("n1") or leader("n2"))
        for m in managers:
            on(lead, "node", "update", "--availability", "drain", m)
        on(lead, "service", "create", "--name", "ten", "--replicas", "10", "bench:1", "sleep", "3600")
        for m in managers:
            on(lead, "node", "update", "--availability", "active", m)
        os.kill(pid("n4"), 19)  # SIGSTOP
        frozen = time.monotonic()

        def n4_down():
            status, body = http(lead, "GET", "/nodes")
            return status == 200 and any(
                n["Description"]["Hostname"] == "n4" and n["Status"]["State"] == "down" for n in json.loads(body))

        wait("n4 down", n4_down, 60)
        down = time.monotonic() - frozen

        def running_elsewhere():
            total = 0
            for m in managers:
                status, body = http(m, "GET", "/containers/json")
                if status == 200:
                    total += sum(1 for c in json.loads(body) if c["Names"][0].lstrip("/").startswith("ten."))
            return total >= 10

        wait("10 tasks elsewhere", running_elsewhere, 60)
        moved = time.monotonic() - frozen
        os.kill(pid("n4"), 18)  # SIGCONT
        print(f"frozen worker with 10 tasks: down after {down:.2f} s, 10 running elsewhere after {moved:.2f} s")

        # Manager memory: idle, then with 1,000 services.
        lead = wait("a leader", lambda: leader("n1") or leader("n2"))
        on(lead, "service", "rm", "ten")
        time.sleep(2)
        idle = rss_kib(pid(lead))
        for i in range(1000):
            status, body = http(lead, "POST", "/services/create", service(f"m{i}"))
            if status != 201:
                sys.exit(f"failover: creating service m{i}: {status} {body}")
        time.sleep(2)
        full = rss_kib(pid(lead))
        print(f"leader daemon RSS: idle {idle / 1024:.1f} MiB, with 1,000 more services {full / 1024:.1f} MiB")
        if DOCKER_TRIALS > 0:
            docker_failover()
    finally:
        for d in DOCKERDS:
            pidfile = os.path.join(LAB, f"docker-{d}", "docker.pid")
            try:
                with open(pidfile) as f:
                    os.kill(int(f.read().strip()), 9)
            except (OSError, ValueError):
                pass
        subprocess.run(["pkill", "-9", "-f", "--", os.path.join(LAB, "docker-")], check=False)
        time.sleep(1)
        sh("lab", "down", check=False)
        shutil.rmtree(LAB, ignore_errors=True)


if __name__ == "__main__":
    main()
