"""Every body `provision plan --json` prints, validated against Datadog's official API models.

The Python `datadog-api-client` deserialises each body with type checks: a wrong type or a missing
required field raises. An unknown enum value or widget shape does not raise but marks the model
`_unparsed`, so the result is walked for that too, and for fields the models mark deprecated
(e.g. a template variable's `default`, replaced by `defaults`: v1/model/dashboard_template_variable.py).
"""

import json
import re
import subprocess
from pathlib import Path

import pytest
from datadog_api_client import Configuration
from datadog_api_client.model_utils import OpenApiModel, validate_and_convert_types
from datadog_api_client.v1.model.dashboard import Dashboard
from datadog_api_client.v1.model.monitor import Monitor
from datadog_api_client.v2.model.downtime_create_request import DowntimeCreateRequest

ROOT = Path(__file__).resolve().parents[2]
# Where `make release` put it (CARGO_TARGET_DIR honoured): local/bin-dir.sh asks cargo.
RELEASE = Path(subprocess.run([str(ROOT / "local" / "bin-dir.sh")], capture_output=True, text=True,
                              check=True).stdout.strip())
PROVISION = RELEASE / "provision"


@pytest.fixture(scope="module")
def plan():
    result = subprocess.run([str(PROVISION), "plan", "--host", "demo-host", "--notify", "me@example.com", "--json"],
                            capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"},
                            cwd=Path(__file__).parent)
    return json.loads(result.stdout)


def deprecated(model):
    """The fields a model's documentation marks deprecated: ":param x: (deprecated) ... **Deprecated**."."""
    params = re.split(r"^\s*:param ", type(model).__init__.__doc__ or "", flags=re.M)[1:]
    return {p.split(":", 1)[0] for p in params
            if p.split(":", 1)[1].lstrip().startswith("(deprecated)") or "**Deprecated**" in p}


def unparsed(value, path="body"):
    """Paths of every model in `value` the client could not parse, of every key it does not know
    (the client keeps unknown keys silently; the API would ignore or reject them), and of every
    field it marks deprecated."""
    found = []
    if isinstance(value, OpenApiModel):
        if getattr(value, "_unparsed", False):
            found.append(path)
        known = set(getattr(value, "openapi_types", {}) or {})
        old = deprecated(value)
        for key, item in value._data_store.items():
            if known and key not in known:
                found.append(f"{path}.{key} (unknown key)")
            if key in old:
                found.append(f"{path}.{key} (deprecated)")
            found += unparsed(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found += unparsed(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            found += unparsed(item, f"{path}.{key}")
    return found


def validate(body, model):
    result = validate_and_convert_types(body, (model,), ["body"], True, True, Configuration())
    assert isinstance(result, model)
    found = unparsed(result)
    assert found == [], f"parts the official model does not know or deprecates: {found}"
    return result


def test_plan_prints_all_seven_objects(plan):
    assert (len(plan["dashboards"]), len(plan["monitors"]), len(plan["downtimes"])) == (2, 3, 2)


@pytest.mark.parametrize("index", [0, 1])
def test_dashboards_are_valid(plan, index):
    dashboard = validate(plan["dashboards"][index], Dashboard)
    assert str(dashboard.layout_type) == "ordered"


@pytest.mark.parametrize("index", [0, 1, 2])
def test_monitors_are_valid(plan, index):
    monitor = validate(plan["monitors"][index], Monitor)
    assert str(monitor.type) in ("metric alert", "query alert")
    # The model's own options: thresholds as numbers, warning before critical for `>`.
    thresholds = monitor.options.thresholds
    assert thresholds.warning < thresholds.critical
    assert monitor.query.endswith(f"> {thresholds.critical:g}")
    for state in ("is_alert", "is_warning", "is_recovery"):
        assert f"{{{{#{state}}}}}" in monitor.message and f"{{{{/{state}}}}}" in monitor.message, state
    assert "managed-by:apm-demo" in monitor.tags


def test_the_downtimes_silence_every_monitor_of_the_plan(plan):
    """A v2 downtime silences the monitors that carry all its monitor_tags, in the groups its scope
    matches (DowntimeMonitorIdentifierTags; `*`: every group)."""
    for downtime in plan["downtimes"]:
        request = validate(downtime, DowntimeCreateRequest)
        attributes = request.data.attributes
        assert attributes.scope == "*"
        tags = attributes.monitor_identifier.monitor_tags
        for monitor in plan["monitors"]:
            assert set(tags) <= set(monitor["tags"]), monitor["name"]


@pytest.mark.parametrize("index", [0, 1])
def test_downtimes_are_valid(plan, index):
    validate(plan["downtimes"][index], DowntimeCreateRequest)


def test_the_checks_catch_what_the_api_would_reject(plan):
    bad_type = json.loads(json.dumps(plan["monitors"][0]))
    bad_type["options"]["thresholds"]["critical"] = "very high"
    with pytest.raises(Exception):
        validate(bad_type, Monitor)
    missing = {k: v for k, v in plan["monitors"][0].items() if k != "query"}
    with pytest.raises(Exception):
        validate(missing, Monitor)
    unknown_widget = json.loads(json.dumps(plan["dashboards"][0]))
    unknown_widget["widgets"][0]["definition"]["type"] = "hologram"
    with pytest.raises(AssertionError, match="does not know"):
        validate(unknown_widget, Dashboard)
    misspelt = json.loads(json.dumps(plan["dashboards"][0]))
    misspelt["default_time_frame"] = misspelt.pop("default_timeframe")
    with pytest.raises(AssertionError, match="does not know"):
        validate(misspelt, Dashboard)
    old_default = json.loads(json.dumps(plan["dashboards"][1]))
    old_default["template_variables"] = [{"name": "host", "prefix": "host", "default": "demo-host"}]
    with pytest.raises(AssertionError, match="does not know") as caught:
        validate(old_default, Dashboard)
    assert "template_variables[0].default (deprecated)" in str(caught.value)
