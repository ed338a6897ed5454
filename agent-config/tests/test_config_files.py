"""Every YAML file under agent-config/ parses and holds the keys the Agent needs (a typo fails here)."""

import re

import pytest
import yaml

from conftest import AGENT_CONFIG, load_yaml


@pytest.mark.parametrize("path", sorted(p.relative_to(AGENT_CONFIG) for p in AGENT_CONFIG.rglob("*.y*ml")),
                         ids=str)
def test_every_yaml_file_parses(path):
    with open(AGENT_CONFIG / path) as f:
        assert isinstance(yaml.safe_load(f), dict), path


def test_every_config_file_ends_in_yaml_not_yml():
    # The Agent container copies only *.yaml from /conf.d.
    assert not list(AGENT_CONFIG.rglob("*.yml"))


def test_datadog_yaml_has_host_tags_apm_logs_and_processes():
    config = load_yaml("datadog.yaml")
    tags = dict(tag.split(":", 1) for tag in config["tags"])
    for key in ("env", "service", "role"):
        assert tags.get(key), f"host tag {key}: is missing"
    assert tags.get("team") or tags.get("owner"), "a team or owner tag"
    assert config["apm_config"]["enabled"] is True
    assert config["apm_config"]["apm_non_local_traffic"] is True
    assert config["dogstatsd_non_local_traffic"] is True
    assert config["logs_enabled"] is True
    assert config["logs_config"]["container_collect_all"] is True
    assert config["process_config"]["process_collection"]["enabled"] is True


def test_datadog_yaml_holds_no_key_and_leaves_the_hostname_to_the_environment():
    config = load_yaml("datadog.yaml")
    for key in ("api_key", "app_key", "hostname"):
        assert key not in config, key
    text = (AGENT_CONFIG / "datadog.yaml").read_text()
    assert not re.search(r"\b[0-9a-f]{32}\b", text), "something shaped like an API key"


def test_mysql_integration_uses_agent7_keys_and_the_seeds_options():
    config = load_yaml("conf.d/mysql.d/conf.yaml")
    assert "init_config" in config
    (instance,) = config["instances"]
    for legacy in ("server", "user", "pass"):
        assert legacy not in instance, f"legacy key {legacy}"
    assert instance["username"] == "datadog"
    assert instance["port"] == 3306
    assert instance["host"]
    options = instance["options"]
    for option in ("extra_status_metrics", "extra_innodb_metrics", "extra_performance_metrics"):
        assert options[option] is True, option
    assert "galera_cluster" not in options, "no Galera cluster exists here"


def test_mysql_password_comes_from_the_environment():
    (instance,) = load_yaml("conf.d/mysql.d/conf.yaml")["instances"]
    assert re.fullmatch(r"%%env_[A-Z_]+%%", instance["password"]), instance["password"]


def test_my_metric_config_sets_45_seconds_per_instance():
    config = load_yaml("conf.d/my_metric.yaml")
    assert "init_config" in config
    (instance,) = config["instances"]
    # The Agent reads the interval from the instance, not from init_config.
    assert instance["min_collection_interval"] == 45
    assert (AGENT_CONFIG / "checks.d" / "my_metric.py").exists(), "the check's file has the config's name"
