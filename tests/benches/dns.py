#!/usr/bin/env python3
"""dns: the mesh's service-discovery resolver vs dnsmasq (issue 13).

    apt-get install -y dnsmasq-base dnsperf   # once
    sudo tests/benches/dns.py                 # builds the resolver's harness first

Both servers answer the same 100 names (svc-000 … svc-099, one A record each)
on loopback, port 53:
  shoal:   the mesh's resolver alone (mesh/examples/dns_bench.rs), serving a
           network map of 100 services with virtual IPs, listening on its
           network's "gateway" 127.53.0.1; the client's address 127.53.0.2 is
           the map's one endpoint (the resolver answers only endpoints);
  dnsmasq: Debian's, the same names from a hosts file (--addn-hosts, no
           upstream, no other names), on 127.53.1.1.
The same dnsperf client asks both from 127.53.0.2, over UDP, each name in
turn. Per round each side gets a saturation run (SECONDS, OUTSTANDING queries
in flight: queries/s) and a fixed-rate run (RATE queries/s for LAT_SECONDS,
every answer's latency: p50/p99); the order of the sides alternates every
round. With PIN=1 (default) the server runs on CPU 1 and dnsperf on CPU 0,
so each server has one core, as dnsmasq (single-threaded) uses.

Env: ROUNDS (5), SECONDS (10), OUTSTANDING (100), RATE (20000),
LAT_SECONDS (5), PIN (1), HARNESS (path of a built dns_bench),
DNSMASQ (/usr/sbin/dnsmasq), DNSPERF (/usr/bin/dnsperf).
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
SECONDS = int(os.environ.get("SECONDS", "10"))
OUTSTANDING = int(os.environ.get("OUTSTANDING", "100"))
RATE = int(os.environ.get("RATE", "20000"))
LAT_SECONDS = int(os.environ.get("LAT_SECONDS", "5"))
PIN = os.environ.get("PIN", "1") == "1"
DNSMASQ = os.environ.get("DNSMASQ", "/usr/sbin/dnsmasq")
DNSPERF = os.environ.get("DNSPERF", "/usr/bin/dnsperf")
NAMES = [f"svc-{i:03}" for i in range(100)]
CLIENT = "127.53.0.2"
SERVERS = {"shoal": "127.53.0.1", "dnsmasq": "127.53.1.1"}


def pinned(cmd, cpu):
    return (["taskset", "-c", str(cpu)] + cmd) if PIN else cmd


def harness():
    if os.environ.get("HARNESS"):
        return os.environ["HARNESS"]
    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "shoal-mesh", "--example", "dns_bench"], cwd=ROOT, check=True
    )
    return os.path.join(ROOT, "target", "release", "examples", "dns_bench")


def start_servers(tmp):
    hosts = os.path.join(tmp, "hosts")
    with open(hosts, "w") as f:
        for i, name in enumerate(NAMES):
            f.write(f"10.53.0.{i} {name}\n")
    shoal = subprocess.Popen(
        pinned([harness(), SERVERS["shoal"], CLIENT, str(len(NAMES))], 1),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    if shoal.stdout.readline().strip() != "ready":
        sys.exit("dns: the shoal harness did not start")
    dnsmasq = subprocess.Popen(
        pinned(
            [
                DNSMASQ,
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                f"--addn-hosts={hosts}",
                f"--listen-address={SERVERS['dnsmasq']}",
                "--bind-interfaces",
                "--port=53",
                "--user=root",
                "--pid-file=",
                "--cache-size=1000",
            ],
            1,
        ),
        stderr=subprocess.DEVNULL,
    )
    return shoal, dnsmasq


def check_answers(side):
    """Both servers must give the same answers before they are timed."""
    for i in (0, 42, 99):
        out = run_dnsperf(side, ["-n", "1"], names=[NAMES[i]], verbose=True)
        if "NOERROR" not in out:
            sys.exit(f"dns: {side} does not answer {NAMES[i]}:\n{out}")


def run_dnsperf(side, extra, names=None, verbose=False):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        for n in names or NAMES:
            f.write(f"{n} A\n")
        data = f.name
    cmd = [DNSPERF, "-s", SERVERS[side], "-a", CLIENT, "-d", data, "-t", "2"] + extra
    if verbose:
        cmd.append("-v")
    out = subprocess.run(pinned(cmd, 0), capture_output=True, text=True, check=True).stdout
    os.unlink(data)
    return out


def saturation(side):
    out = run_dnsperf(side, ["-l", str(SECONDS), "-q", str(OUTSTANDING)])
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))
    lost = re.search(r"Queries lost:\s+(\d+)", out).group(1)
    if not re.search(r"NOERROR \d+ \(100\.00%\)", out):
        sys.exit(f"dns: {side} gave answers other than NOERROR:\n{out}")
    return qps, int(lost)


def latencies(side):
    out = run_dnsperf(side, ["-l", str(LAT_SECONDS), "-Q", str(RATE), "-q", str(OUTSTANDING)], verbose=True)
    # Verbose lines: "> NOERROR svc-000 A 0.000070"
    lat = [float(m.group(1)) for m in re.finditer(r"^> NOERROR \S+ A ([\d.]+)$", out, re.M)]
    if not lat:
        sys.exit(f"dns: no latencies from {side}:\n{out[:2000]}")
    return lat


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def main():
    for tool in (DNSMASQ, DNSPERF):
        if not shutil.which(tool):
            sys.exit(f"dns: {tool} is missing: apt-get install -y dnsmasq-base dnsperf")
    tmp = tempfile.mkdtemp(prefix="shoal-dns-bench-")
    shoal, dnsmasq = start_servers(tmp)
    try:
        time.sleep(0.5)
        for side in SERVERS:
            check_answers(side)
        qps = {s: [] for s in SERVERS}
        lost = {s: 0 for s in SERVERS}
        lat = {s: [] for s in SERVERS}
        for r in range(ROUNDS):
            order = list(SERVERS) if r % 2 == 0 else list(reversed(SERVERS))
            for side in order:
                q, l = saturation(side)
                qps[side].append(q)
                lost[side] += l
                print(f"round {r + 1} {side}: {q:.0f} queries/s, {l} lost", flush=True)
            for side in order:
                lat[side].extend(latencies(side))
        print()
        print(f"| side | queries/s (median of {ROUNDS}) | min | max | lost | p50 ms @ {RATE}/s | p99 ms @ {RATE}/s |")
        print("|---|---|---|---|---|---|---|")
        for side in SERVERS:
            print(
                f"| {side} | {statistics.median(qps[side]):.0f} | {min(qps[side]):.0f} | {max(qps[side]):.0f} "
                f"| {lost[side]} | {pct(lat[side], 50) * 1000:.3f} | {pct(lat[side], 99) * 1000:.3f} |"
            )
        ratio = statistics.median(qps["shoal"]) / statistics.median(qps["dnsmasq"])
        p99 = pct(lat["shoal"], 99) / pct(lat["dnsmasq"], 99)
        print(f"\nshoal / dnsmasq: queries/s {ratio:.2f}x, p99 {p99:.2f}x (target: queries/s >= 1.0x)")
    finally:
        shoal.stdin.close()
        shoal.wait(timeout=10)
        dnsmasq.terminate()
        dnsmasq.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
