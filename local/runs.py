"""How the tests of local/ run `make local` (local/run.sh), and where the binaries are."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN_DIR = Path(subprocess.run([str(ROOT / "local" / "bin-dir.sh")], capture_output=True, text=True,
                              check=True).stdout.strip())
# The latency fault's run: 5% of GET /api/trace 1 s slower from a third of the way in. At 200/s for
# 6 s, a quarter of them to /api/trace, about 200 requests of the route run with the flag on: none of
# them slow has a chance of 0.95^200, 4 in 100,000.
FAULT_RUN = {"FAULT": "routeLatencyTailMs", "DURATION": "6s", "RATE": "200"}


def run_local(out, **env):
    return subprocess.run([str(ROOT / "local" / "run.sh")], cwd=ROOT, env=dict(os.environ, OUT=str(out), **env),
                          capture_output=True, text=True, timeout=300)
