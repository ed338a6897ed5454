"""One source of truth: what deploy/kubernetes/ copies from elsewhere in the repository is the same.

generate.py writes the copies; these tests fail when a source changed and the copy was not
regenerated, and check each copy again by reading it as the cluster would (not through the
generator's own text), so a generator bug cannot hide a difference.
"""

import json
import shutil

import pytest
import yaml

from k8s_common import ROOT, VALUES, find, load_generator, load_objects

generate = load_generator()

AGENT_CONFIG = ROOT / "agent-config"


def test_generated_files_are_up_to_date():
    stale = [str(path.relative_to(ROOT)) for path, text in generate.expected().items() if path.read_text() != text]
    assert not stale, f"{stale} differ from their sources: run python3 deploy/kubernetes/generate.py"


def test_helm_values_carry_the_custom_check_verbatim():
    values = yaml.safe_load(VALUES.read_text())["datadog"]
    assert values["confd"] == {"my_metric.yaml": (AGENT_CONFIG / "conf.d/my_metric.yaml").read_text()}
    assert values["checksd"] == {"my_metric.py": (AGENT_CONFIG / "checks.d/my_metric.py").read_text()}
    # The Agent pairs a check with its instance file by name.
    assert {k.rsplit(".", 1)[0] for k in values["confd"]} == {k.rsplit(".", 1)[0] for k in values["checksd"]}


def test_helm_values_carry_the_host_tags():
    host = yaml.safe_load((AGENT_CONFIG / "datadog.yaml").read_text())
    assert yaml.safe_load(VALUES.read_text())["datadog"]["tags"] == host["tags"]


def test_helm_values_carry_the_log_processing_rules():
    host = yaml.safe_load((AGENT_CONFIG / "datadog.yaml").read_text())
    value = yaml.safe_load(VALUES.read_text())["datadog"]["envDict"]["DD_LOGS_CONFIG_PROCESSING_RULES"]
    # The Agent reads the variable as JSON (comp/logs/agent/config/config.go, GlobalProcessingRules).
    assert json.loads(value) == host["logs_config"]["processing_rules"]
    # The chart writes it as `value: {{ $value | quote }}` (DataDog/helm-charts,
    # charts/datadog/templates/_helpers.tpl, additional-env-dict-entries): Go's quoting of this ASCII
    # text is JSON's, and YAML reads it back unchanged. Kubernetes would expand a `$(NAME)` in it.
    assert yaml.safe_load("value: " + json.dumps(value))["value"] == value and value.isascii()
    assert "$(" not in value


def test_mysql_annotation_is_the_integration_of_agent_config():
    conf = yaml.safe_load((AGENT_CONFIG / "conf.d/mysql.d/conf.yaml").read_text())
    pod = find(load_objects(), "StatefulSet", "mysql")["spec"]["template"]
    checks = json.loads(pod["metadata"]["annotations"]["ad.datadoghq.com/mysql.checks"])
    assert checks == {"mysql": {"init_config": conf["init_config"] or {}, "instances": conf["instances"]}}
    # The file's ad_identifiers names the image; on a pod the annotation's key names the container.
    assert conf["ad_identifiers"] == ["mysql"] and pod["spec"]["containers"][0]["name"] == "mysql"


def test_mysql_setup_configmaps_hold_the_files_of_agent_config():
    objects = load_objects()
    scripts = {p.name: p.read_text() for p in (AGENT_CONFIG / "mysql").glob("*.sh")}
    assert "datadog-user.sh" in scripts
    assert find(objects, "ConfigMap", "mysql-init")["data"] == scripts
    options = {p.name: p.read_text() for p in (AGENT_CONFIG / "mysql-conf").glob("*.cnf")}
    assert (find(objects, "ConfigMap", "mysql-conf").get("data") or {}) == options


def test_flags_configmap_is_the_all_off_flag_file():
    data = find(load_objects(), "ConfigMap", "apm-demo-flags")["data"]
    text = (ROOT / "local/flags/flags.json").read_text()
    assert data == {"flags.json": text}
    assert {f["state"] for f in json.loads(text)["flags"].values()} == {"DISABLED"}


def test_a_change_in_agent_config_makes_the_check_fail(tmp_path, monkeypatch):
    # The drift test above, against a copy of agent-config/ with the check's interval changed.
    copy = tmp_path / "agent-config"
    shutil.copytree(AGENT_CONFIG, copy, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    instance = copy / "conf.d/my_metric.yaml"
    instance.write_text(instance.read_text().replace("min_collection_interval: 45", "min_collection_interval: 30"))
    monkeypatch.setattr(generate, "AGENT_CONFIG", copy)
    assert generate.expected()[generate.VALUES] != VALUES.read_text()


def test_block_scalars_round_trip_the_files_exactly():
    for text in ["a\n", "a\n\n  b\n\tc\n", "x: 1\n# comment\n"]:
        assert yaml.safe_load("k: " + generate.block(text, 2))["k"] == text
    with pytest.raises(ValueError):
        generate.block("no final newline", 2)
