"""local/flags/flags.json as flagd reads it: flagd's Python in-process evaluator (PyPI
`openfeature-flagd-core`, the evaluator of OpenFeature's flagd provider for Python) loads the file, and
resolves every flag, for each route and method of the service, as the service's own evaluation does.

That evaluator keeps to flagd's flag model (flagd `core/pkg/model/flag.go`: state, defaultVariant,
variants, targeting, metadata) and refuses any other key, where flagd in Go only warns: so the file
keeps each flag's description under `metadata`. The service is the release binary, reading a copy of
the file with every flag switched on; which flags acted on a request is its access line's
`fault.injected`. A `fractional` split is compared as a rate: flagd buckets the request's targeting key
by a hash of it, the service draws a random one per request (docs/faults.md).
"""

import http.client
import json
import math
import os
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ParseError
from openfeature.flag_evaluation import Reason

ROOT = Path(__file__).resolve().parents[2]
FLAGS = ROOT / "local" / "flags" / "flags.json"
# Where `make release` put it (CARGO_TARGET_DIR honoured): local/bin-dir.sh asks cargo.
SERVICE = Path(subprocess.run([str(ROOT / "local" / "bin-dir.sh")], capture_output=True, text=True,
                              check=True).stdout.strip()) / "apm-demo"

# Each route of the service: the request, and the evaluation context the service gives its flags
# (src/faults/mod.rs: the matched route template, "" when none matched, and the method).
REQUESTS = [
    ("GET", "/", "/"),
    ("GET", "/api/apm", "/api/apm"),
    ("GET", "/api/trace", "/api/trace"),
    ("GET", "/api/visits", "/api/visits"),
    ("POST", "/api/visits", "/api/visits"),
    ("GET", "/api/visits/1", "/api/visits/{id}"),
    ("GET", "/no/such/route", ""),
]
# Requests per route where a flag splits them (fractional), and where none does.
SPLIT_REQUESTS, WHOLE_REQUESTS = 1000, 100
# Targeting keys flagd resolves per route: a first look, then more where the flag splits them.
FIRST_KEYS, SPLIT_KEYS = 300, 3000


def flag_file():
    return json.loads(FLAGS.read_text())


def resolver(core, flag):
    """The typed resolution an OpenFeature client would ask for, with the off value as its default."""
    if isinstance(flag["variants"][flag["defaultVariant"]], bool):
        return lambda key, context: core.resolve_boolean_value(key, False, context)
    return lambda key, context: core.resolve_integer_value(key, 0, context)


def acts(value):
    """What the service does with a value (src/faults/mod.rs, `plan`): `true` switches a failure, a
    number above 0 is milliseconds or KiB."""
    return value is True or (type(value) in (int, float) and value > 0)


def test_flagd_loads_the_file_and_every_flag_is_off():
    core = FlagdCore()
    core.set_flags(FLAGS.read_text())
    flags = flag_file()["flags"]
    assert len(flags) == 8
    for key, flag in flags.items():
        for method, _, route in REQUESTS:
            result = resolver(core, flag)(key, EvaluationContext("k", {"route": route, "method": method}))
            assert (result.reason, acts(result.value)) == (Reason.DISABLED, False), (key, route)
            assert result.flag_metadata["description"] == flag["metadata"]["description"], key


def test_flagd_refuses_a_key_its_model_does_not_define():
    """Why the descriptions live under `metadata`: beside `state`, flagd's Python evaluator refuses them
    (and the test above would fail on the file)."""
    file = flag_file()
    flag = file["flags"]["routeFailure"]
    flag["description"] = flag.pop("metadata")["description"]
    with pytest.raises(ParseError):
        FlagdCore().set_flags(json.dumps(file))


def with_every_flag_on(file):
    """`file` with every flag enabled and each number variant above 0 made 1 (ms or KiB: the targeting
    is what is compared, and the requests stay fast)."""
    for flag in file["flags"].values():
        flag["state"] = "ENABLED"
        for name, value in flag["variants"].items():
            if type(value) in (int, float) and value > 0:
                flag["variants"][name] = 1
    return file


def flagd_shares(file):
    """{(flag, method, route): the share of targeting keys on which flagd resolves the flag to a value
    that acts}, each flag resolved without error."""
    core = FlagdCore()
    core.set_flags(json.dumps(file))  # as text: given a dict, flagd-core rewrites its keys in place
    shares = {}
    for key, flag in file["flags"].items():
        resolve = resolver(core, flag)
        for method, _, route in REQUESTS:
            def share(keys):
                return sum(acts(resolve(key, EvaluationContext(f"request-{i}", {"route": route, "method": method})).value)
                           for i in range(keys)) / keys
            first = share(FIRST_KEYS)
            shares[key, method, route] = share(SPLIT_KEYS) if 0 < first < 1 else first
    return shares


def wait_for_line(path, pattern, process, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, path.read_text()[-2000:]
        match = re.search(pattern, path.read_text())
        if match:
            return match
        time.sleep(0.05)
    raise AssertionError(f"{pattern} within {timeout}s: {path.read_text()[-2000:]}")


def service_acted(file, counts, tmp_path):
    """Runs the release binary on `file` (no agent, no database), sends `counts[(method, path)]`
    requests of each, one connection; returns {(flag, method, path): requests it acted on} and the
    requests logged per (method, path)."""
    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps(file))
    log, errors = tmp_path / "service.log", tmp_path / "service.err"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "MYSQL_", "FLAGD_"))}
    env.update(HOST="127.0.0.1", PORT="0", LOG_FORMAT="json", DD_TRACE_ENABLED="false",
               FLAGD_OFFLINE_FLAG_SOURCE_PATH=str(flags))
    with open(log, "w") as out, open(errors, "w") as err:
        service = subprocess.Popen([str(SERVICE)], env=env, stdout=out, stderr=err)
    try:
        port = int(wait_for_line(log, r"listening on http://127\.0\.0\.1:(\d+)", service).group(1))
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        started = time.monotonic()
        for (method, path), count in counts.items():
            for _ in range(count):
                connection.request(method, path, body=b"" if method == "POST" else None)
                connection.getresponse().read()
            assert time.monotonic() - started < 120, "requests took too long"
        connection.close()
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
    acted, logged = Counter(), Counter()
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("logger.name") != "apm_demo::access":
            continue
        request = (entry["http.method"], entry["http.url_details.path"])
        logged[request] += 1
        for key in filter(None, (entry.get("fault.injected") or "").split(",")):
            acted[(key, *request)] += 1
    return acted, logged


def test_flagd_and_the_service_resolve_every_flag_alike_on_every_route(tmp_path):
    assert SERVICE.exists(), f"{SERVICE} is missing: `make release` builds it"
    file = with_every_flag_on(flag_file())
    shares = flagd_shares(file)
    split = {(m, p) for m, p, r in REQUESTS if any(0 < shares[k, m, r] < 1 for k in file["flags"])}
    counts = {(m, p): SPLIT_REQUESTS if (m, p) in split else WHOLE_REQUESTS for m, p, _ in REQUESTS}
    acted, logged = service_acted(file, counts, tmp_path)
    assert logged == Counter(counts), "an access line per request"

    for key in file["flags"]:
        assert any(shares[key, m, r] > 0 for m, _, r in REQUESTS), f"{key} acts nowhere: a vacuous comparison"
        for method, path, route in REQUESTS:
            flagd, n = shares[key, method, route], counts[method, path]
            service = acted[key, method, path] / n
            where = f"{key} on {method} {path}: flagd {flagd:.3f}, the service {service:.3f} of {n}"
            if flagd in (0, 1):
                assert service == flagd, where
            else:
                # Both are samples of the same rate: within 4.5 standard deviations of their difference.
                deviation = math.sqrt(flagd * (1 - flagd) * (1 / n + 1 / SPLIT_KEYS))
                assert 0 < service < 1 and abs(service - flagd) < 4.5 * deviation, where
