"""What the Python benchmarks share: the shoal binary and a lab of simulated
hosts on a temporary root (imported by failover.py and raftwrites.py)."""

import os
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def shoal_bin():
    """$SHOAL, or target/release/shoal built now."""
    if os.environ.get("SHOAL"):
        return os.environ["SHOAL"]
    subprocess.run(["cargo", "build", "--release", "-p", "shoal", "-p", "shoal-runtime"], cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", "shoal")


class Lab:
    """A lab root of its own; `sh` runs the CLI with it."""

    def __init__(self, prefix):
        self.shoal = shoal_bin()
        self.root = tempfile.mkdtemp(prefix=prefix)
        self.env = dict(os.environ, SHOAL_LAB_ROOT=self.root)

    def sh(self, *args, check=True):
        return subprocess.run([self.shoal, *args], env=self.env, check=check, capture_output=True, text=True)
