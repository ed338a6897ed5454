"""The my_metric custom check, run the way the Agent runs it, with datadog-checks-base's stub aggregator."""

import importlib.util

import pytest
from datadog_checks.base.stubs import aggregator as stub_aggregator

from conftest import AGENT_CONFIG, load_yaml


def load_check_class():
    spec = importlib.util.spec_from_file_location("my_metric", AGENT_CONFIG / "checks.d" / "my_metric.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from datadog_checks.base import AgentCheck

    (check_class,) = [v for v in vars(module).values()
                      if isinstance(v, type) and issubclass(v, AgentCheck) and v is not AgentCheck]
    return check_class


@pytest.fixture
def aggregator():
    stub_aggregator.reset()
    yield stub_aggregator
    stub_aggregator.reset()


@pytest.fixture
def check():
    config = load_yaml("conf.d/my_metric.yaml")
    instance = config["instances"][0]
    return load_check_class()("my_metric", config["init_config"] or {}, [instance]), instance


def test_one_run_submits_one_gauge_in_range_with_the_instance_tags(aggregator, check):
    check, instance = check
    check.run()
    (metric,) = aggregator.metrics("my_metric")
    assert metric.type == aggregator.GAUGE
    assert 0 <= metric.value <= 1000
    assert metric.value == int(metric.value)
    assert sorted(metric.tags) == sorted(instance["tags"])
    aggregator.assert_metric("my_metric", count=1, metric_type=aggregator.GAUGE, tags=instance["tags"])
    aggregator.assert_all_metrics_covered()


def test_runs_cover_the_range(aggregator, check):
    check, _ = check
    runs = 2000
    for _ in range(runs):
        check.run()
    values = [m.value for m in aggregator.metrics("my_metric")]
    assert len(values) == runs
    assert all(0 <= v <= 1000 for v in values)
    assert len(set(values)) > 500, "a random value, not a constant"
    assert min(values) < 50 and max(values) > 950, "the whole range 0..1000"


def test_check_runs_clean(check):
    check, _ = check
    assert check.run() == "", "an empty string is the Agent's 'no error'"


def test_interval_is_the_instances_not_the_checks(check):
    check, instance = check
    # The Agent schedules by the instance's min_collection_interval; the Python file sets none.
    assert instance["min_collection_interval"] == 45
    source = (AGENT_CONFIG / "checks.d" / "my_metric.py").read_text()
    assert "min_collection_interval" not in source.replace("``min_collection_interval``", "")
