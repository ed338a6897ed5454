"""The `make local` runs the tests of local/ share, as a pytest plugin: each run costs a MariaDB, a
test agent, the service and seconds of load, so each is made once per pytest session; and one headless
Chromium. A test module that uses them says `pytest_plugins = ["runs"]` (a plugin's fixtures are the
session's, shared by every module; a module named conftest.py here would shadow agent-config/tests'
own, which its tests import by that name)."""

import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

import docs_example

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


@pytest.fixture(scope="session")
def local_run_passwords():
    """The MariaDB passwords the session's run uses: random, given through the environment (as a user
    may), so that a test can look for them in everything the run leaves."""
    return {name: "pw-" + secrets.token_urlsafe(18)
            for name in ("MYSQL_ROOT_PASSWORD", "MYSQL_APP_PASSWORD", "MYSQL_DATADOG_PASSWORD")}


@pytest.fixture(scope="session")
def local_run(tmp_path_factory, local_run_passwords):
    """One 5 s run as docs/local.md's example, with the binaries found through CARGO_TARGET_DIR: a
    target directory elsewhere whose release/ is the build's. (stdout, seconds, OUT directory)"""
    tmp = tmp_path_factory.mktemp("local")
    (tmp / "target").mkdir()
    (tmp / "target" / "release").symlink_to(BIN_DIR)
    started = time.monotonic()
    result = run_local(tmp / "out", DURATION=docs_example.DURATION, RATE="50", PORT="0",
                       CARGO_TARGET_DIR=str(tmp / "target"), **local_run_passwords)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout, seconds, tmp / "out"


@pytest.fixture(scope="session")
def fault_run(tmp_path_factory):
    """`FAULT=routeLatencyTailMs make local`, short and fast (FAULT_RUN). (stdout, OUT directory)"""
    out = tmp_path_factory.mktemp("fault") / "out"
    result = run_local(out, PORT="0", BIN_DIR=str(BIN_DIR), **FAULT_RUN)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout, out


@pytest.fixture(scope="session")
def chromium():
    import browser

    with browser.chromium() as found:
        yield found
