"""A real browser (Debian's Chromium, headless) opens the service's three pages: it sees the Flask
texts, and Datadog's test agent receives those requests' spans with Chromium's user agent.

`make test` installs Chromium when it is missing. Chromium runs with the flags this machine needs:
no sandbox (root), no GPU, and none of its background connections (the network is closed).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "local"))

from ports import free_port  # noqa: E402

# Where `make release` put it (CARGO_TARGET_DIR honoured): local/bin-dir.sh asks cargo.
RELEASE = Path(subprocess.run([str(ROOT / "local" / "bin-dir.sh")], capture_output=True, text=True,
                              check=True).stdout.strip())
SERVICE = RELEASE / "apm-demo"
TEST_AGENT = ROOT / ".venv" / "bin" / "ddapm-test-agent"
PAGES = {"/": "Entrypoint to the Application", "/api/apm": "Getting APM Started", "/api/trace": "Posting Traces"}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


def wait_until(check, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout}s")


@pytest.fixture
def traced_service():
    agent_port, port = free_port(), free_port()
    agent = subprocess.Popen([str(TEST_AGENT), "--port", str(agent_port), "--otlp-http-port", str(free_port()),
                              "--otlp-grpc-port", str(free_port())], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    service = None
    try:
        agent_url = f"http://127.0.0.1:{agent_port}"
        wait_until(lambda: urllib.request.urlopen(f"{agent_url}/test/traces").status == 200, "the test agent starts")
        env = dict(os.environ, HOST="127.0.0.1", PORT=str(port), DD_TRACE_AGENT_URL=agent_url, LOG_FORMAT="json")
        service = subprocess.Popen([str(SERVICE)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/health").status == 200, "the service starts")
        yield f"http://127.0.0.1:{port}", agent_url, service
    finally:
        for process in (service, agent):
            if process and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)


def chromium_dom(url):
    chromium = shutil.which("chromium")
    assert chromium, "Chromium is missing: `make test` installs it"
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_chromium_sees_the_flask_texts_and_the_agent_sees_chromium(traced_service):
    url, agent_url, service = traced_service
    for path, text in PAGES.items():
        dom = chromium_dom(url + path)
        assert text in dom, f"{path}: {dom[:500]}"

    service.send_signal(signal.SIGTERM)  # flushes the spans
    assert service.wait(timeout=30) == 0
    with urllib.request.urlopen(f"{agent_url}/test/traces") as response:
        spans = [span for trace in json.load(response) for span in trace]
    by_browser = {span["resource"] for span in spans if "Chrome" in span["meta"].get("http.useragent", "")}
    for path in PAGES:
        assert f"GET {path}" in by_browser, f"the span of {path} with Chromium's user agent: {spans}"
