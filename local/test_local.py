"""`make local`, run for a few seconds: the summary it prints comes from real spans.

Run by `make test` after the release binaries are built (local/run.sh uses them as they are).
"""

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_make_local_prints_a_summary_of_real_spans(tmp_path):
    summary_path = tmp_path / "summary.json"
    env = dict(os.environ, DURATION="5s", RATE="40", PORT="0", SUMMARY_JSON=str(summary_path))
    result = subprocess.run([str(ROOT / "local" / "run.sh")], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "what Datadog's APM service page would show" in out

    summary = json.loads(summary_path.read_text())
    resources = summary["resources"]
    for resource in ("GET /", "GET /api/apm", "GET /api/trace"):
        assert resources[resource]["hits"] > 0, resource
        assert resources[resource]["errors"] == 0, resource
        assert resource in out, f"{resource} is in the printed table"
    not_found = resources["GET 404"]
    assert not_found["hits"] > 0
    assert not_found["client_errors"] == not_found["hits"], "the 404 path is client errors"
    assert not_found["errors"] == 0, "a 404 is not an APM error"
    assert summary["loadgen"]["errors"] == 0, "no failed request"
    assert sum(r["hits"] for r in resources.values()) == summary["loadgen"]["requests"], "one span per request"
    assert summary["trace_checks"] == "200: OK"
    # Everything it started is stopped: no test agent or service left on this run's ports.
    assert "interrupted" not in out


def test_ctrl_c_stops_everything_it_started():
    import re
    import signal
    import socket
    import time

    env = dict(os.environ, DURATION="60s", RATE="20", PORT="0")
    process = subprocess.Popen([str(ROOT / "local" / "run.sh")], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen, ports = [], []
    deadline = time.monotonic() + 120
    for line in process.stdout:
        seen.append(line)
        ports += [int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)", line)]
        if line.startswith("== load"):
            break
        assert time.monotonic() < deadline, "".join(seen)
    time.sleep(1)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    rest, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "interrupted: stopping everything" in rest
    assert len(ports) >= 2, "".join(seen)  # the test agent's and the service's
    for port in ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
