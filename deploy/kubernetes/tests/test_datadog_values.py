"""datadog-values.yaml against the chart version it names.

Helm does not refuse an unknown key: a misspelt one is ignored silently and the feature stays off.
So every key the file sets must be one the chart's values.yaml declares, with a value of its type;
tests/data/datadog-chart-keys.yaml holds those keys as read from the chart at a pinned commit.
"""

import re
from pathlib import Path

import pytest
import yaml

from k8s_common import ROOT, VALUES

KEYS_FILE = Path(__file__).resolve().parent / "data" / "datadog-chart-keys.yaml"
CHART = yaml.safe_load(KEYS_FILE.read_text())
TEXT = VALUES.read_text()
VALUES_DATA = yaml.safe_load(TEXT)
TYPES = {"bool": bool, "string": str, "list": list, "map": dict}


def unknown_keys(values, chart_keys, prefix=""):
    """The keys of `values` the chart does not declare, or whose value is not of the declared type."""
    problems = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        declared = chart_keys.get(path)
        if declared is not None:
            if not isinstance(value, TYPES[declared["type"]]):
                problems.append(f"{path}: a {type(value).__name__}, the chart takes a {declared['type']}")
            elif "choices" in declared and value not in declared["choices"]:
                problems.append(f"{path}: {value!r} is none of {declared['choices']}")
        elif isinstance(value, dict) and any(k.startswith(path + ".") for k in chart_keys):
            problems += unknown_keys(value, chart_keys, path + ".")
        else:
            problems.append(f"{path}: not a key of chart {CHART['version']}")
    return problems


def test_values_file_names_the_chart_version_and_commit_it_was_checked_against():
    assert f"`datadog`, version {CHART['version']}" in TEXT
    assert f"--version {CHART['version']}" in TEXT
    assert CHART["commit"] in TEXT and re.fullmatch(r"[0-9a-f]{40}", CHART["commit"])


def test_every_key_set_is_declared_by_the_chart():
    assert unknown_keys(VALUES_DATA, CHART["keys"]) == []


def test_a_misspelt_or_mistyped_key_is_caught():
    # The check above, on values it must refuse.
    bad = {"datadog": {"apm": {"portEnable": True, "socketEnabled": "no"}}, "clusterAgent": {"admissionController": {"configMode": "hostIP"}}}
    assert unknown_keys(bad, CHART["keys"]) == [
        "datadog.apm.portEnable: not a key of chart 3.201.0",
        "datadog.apm.socketEnabled: a str, the chart takes a bool",
        "clusterAgent.admissionController.configMode: 'hostIP' is none of ['hostip', 'service', 'socket', 'csi']",
    ]


def test_every_vendored_key_quotes_the_chart():
    for key, declared in CHART["keys"].items():
        assert declared["doc"].startswith(key + " -- "), key
        assert declared["type"] in TYPES, key


def get(path):
    node = VALUES_DATA
    for part in path.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize(
    "path,value",
    [
        ("clusterAgent.enabled", True),
        ("clusterAgent.admissionController.enabled", True),
        ("clusterAgent.admissionController.mutateUnlabelled", False),
        ("datadog.logs.enabled", True),
        ("datadog.logs.containerCollectAll", True),
        ("datadog.processAgent.processCollection", True),
        ("datadog.apm.portEnabled", True),
    ],
)
def test_the_features_the_demo_needs_are_on(path, value):
    assert get(path) == value


def test_apm_goes_over_the_host_port_because_the_exporter_cannot_use_the_socket():
    # The service refuses a unix:// agent URL at start; the socket mode would inject exactly that.
    assert "unix sockets are not supported by this exporter" in (ROOT / "src/config.rs").read_text()
    assert get("clusterAgent.admissionController.configMode") == "hostip"
    assert get("datadog.apm.portEnabled") is True


def test_no_secret_in_the_values():
    assert get("datadog.apiKeyExistingSecret") == "datadog-secret"
    assert "apiKey" not in VALUES_DATA["datadog"] and "appKey" not in VALUES_DATA["datadog"]
    (env,) = get("datadog.env")
    assert env["name"] == "MYSQL_DATADOG_PASSWORD" and set(env) == {"name", "valueFrom"}
    # The MySQL instance reads exactly this variable of the Agent's environment.
    conf = (ROOT / "agent-config/conf.d/mysql.d/conf.yaml").read_text()
    assert "%%env_MYSQL_DATADOG_PASSWORD%%" in conf
