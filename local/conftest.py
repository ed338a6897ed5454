"""The `make local` runs the tests of local/ share (each costs a MariaDB, a test agent, the service and
seconds of load, so each is made once per pytest session), and one headless Chromium."""

import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local"))

import docs_example  # noqa: E402
from runs import BIN_DIR, FAULT_RUN, run_local  # noqa: E402


@pytest.fixture(scope="session")
def local_run(tmp_path_factory):
    """One 5 s run as docs/local.md's example, with the binaries found through CARGO_TARGET_DIR: a
    target directory elsewhere whose release/ is the build's. (stdout, seconds, OUT directory)"""
    tmp = tmp_path_factory.mktemp("local")
    (tmp / "target").mkdir()
    (tmp / "target" / "release").symlink_to(BIN_DIR)
    started = time.monotonic()
    result = run_local(tmp / "out", DURATION=docs_example.DURATION, RATE="50", PORT="0",
                       CARGO_TARGET_DIR=str(tmp / "target"))
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
