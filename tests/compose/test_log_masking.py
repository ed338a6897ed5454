"""The Agent's log processing rule that masks a MySQL root password, against the line the mysql image
prints, and the same rule wherever the Agent is configured (agent-config/datadog.yaml, compose).

No Agent runs here: its source is the judge (DataDog/datadog-agent).
- comp/logs/agent/config/config.go, GlobalProcessingRules: the rules are `logs_config.processing_rules`
  of datadog.yaml, or a JSON string in DD_LOGS_CONFIG_PROCESSING_RULES, which then replaces them.
- comp/logs/agent/config/processing_rules.go (read at 67b61445d633cc9028acb29948e7e0d2531af514),
  ValidateProcessingRules and CompileProcessingRules: every rule needs a name, a known type and a
  pattern that Go's regexp (RE2) compiles; an invalid rule stops the logs agent ("Invalid processing
  rules", comp/logs/agent/agentimpl).
- pkg/logs/processor/processor.go (read at a19dbb0674c38a554121a20c984a8d79b1c1021e and later),
  applyRedactingRules: the global rules, then the source's own, on every message before it is
  encoded and sent; mask_sequences is `rule.Regex.ReplaceAll(content, rule.Placeholder)`. Later
  versions first skip a rule whose pattern's literal prefix (regexp.LiteralPrefix) is not in the
  content: a line the pattern matches always holds it, so the outcome is the same.
The line: docker-library/mysql, 8.4/docker-entrypoint.sh (read at
7f30fdb0738041fc5125e8218e393e0a891243e9): docker_setup_db generates the password with
`openssl rand -base64 24` and prints it with mysql_note "GENERATED ROOT PASSWORD: $MYSQL_ROOT_PASSWORD";
mysql_log prints `printf '%s [%s] [Entrypoint]: %s\\n' "$(date --rfc-3339=seconds)" Note "$text"`.
The stand-in's entrypoint (tests/containers/mysql_stand_in) prints it the same way, and is run here.

Python's `re` applies the pattern: it uses only what RE2 and Python read alike (checked below), and
the placeholder holds no `$`, which Go's ReplaceAll would expand.
"""

import base64
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
STAND_IN = ROOT / "tests/containers/mysql_stand_in/docker-entrypoint.sh"
RULE_TYPES = {"exclude_at_match", "include_at_match", "mask_sequences", "multi_line", "exclude_truncated"}
LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d\d:\d\d \[Note\] \[Entrypoint\]: GENERATED ROOT PASSWORD: (\S+)")


def global_rules() -> list:
    return yaml.safe_load((ROOT / "agent-config/datadog.yaml").read_text())["logs_config"]["processing_rules"]


def agent_apply(rules: list, content: str):
    """The message as the Agent sends it, None if a rule drops it (the mask and exclude rules)."""
    for rule in rules:
        regex = re.compile(rule["pattern"])
        if rule["type"] == "mask_sequences":
            content = regex.sub(lambda _: rule["replace_placeholder"], content)
        elif rule["type"] == "exclude_at_match" and regex.search(content):
            return None
    return content


def generated_password() -> str:
    """As `openssl rand -base64 24` makes it: 24 random bytes, 32 characters of A-Z a-z 0-9 + /."""
    return base64.b64encode(os.urandom(24)).decode()


def stand_in_line(password: str) -> str:
    """The line the stand-in's entrypoint prints for a generated root password, run by bash."""
    run = subprocess.run(["bash", "-c", f'. "{STAND_IN}"; mysql_note "GENERATED ROOT PASSWORD: $1"', "-", password],
                         capture_output=True, text=True, check=True)
    return run.stdout.rstrip("\n")


def entrypoint_line(password: str) -> str:
    """The same line built from the official entrypoint's format, with the date as it takes it."""
    date = subprocess.run(["date", "--rfc-3339=seconds"], capture_output=True, text=True, check=True).stdout.strip()
    return "%s [%s] [Entrypoint]: %s" % (date, "Note", f"GENERATED ROOT PASSWORD: {password}")


def test_the_rule_is_one_the_agent_accepts():
    rules = global_rules()
    assert rules
    for rule in rules:
        assert rule["name"] and rule["type"] in RULE_TYPES and rule["pattern"], rule
        re.compile(rule["pattern"])
        # No lookaround or back-reference (RE2 has neither) and no `$` expansion in the placeholder.
        assert not re.search(r"\(\?[=!<]|\\[1-9]", rule["pattern"]), rule
        assert "$" not in rule.get("replace_placeholder", ""), rule
    (mask,) = [r for r in rules if r["type"] == "mask_sequences"]
    assert mask["replace_placeholder"] == "GENERATED ROOT PASSWORD: [masked]"


def test_the_stand_in_prints_the_line_as_the_official_entrypoint_does():
    password = generated_password()
    for line in (stand_in_line(password), entrypoint_line(password)):
        assert LINE.fullmatch(line) and LINE.fullmatch(line).group(1) == password, line


@pytest.mark.parametrize("make_line", [stand_in_line, entrypoint_line])
def test_every_generated_password_is_masked(make_line):
    rules = global_rules()
    passwords = [generated_password() for _ in range(200)] + ["+" * 32, "/" * 32, "A+b/" * 8]
    for password in passwords:
        line = make_line(password)
        sent = agent_apply(rules, line)
        assert password not in sent, sent
        assert sent == line[: line.index("GENERATED")] + "GENERATED ROOT PASSWORD: [masked]", sent


def test_other_lines_pass_unchanged():
    rules = global_rules()
    for line in ["2026-01-01 00:00:00+00:00 [Note] [Entrypoint]: Temporary server started.",
                 '{"level":"INFO","message":"GET /api/visits 200","dd.trace_id":"1"}',
                 "GENERATED ROOT PASSWORD:", "generated root password: not the image's line"]:
        assert agent_apply(rules, line) == line


def test_a_narrower_pattern_would_leak_and_is_caught():
    # The check above, on a rule that stops at the first + or / of a password.
    narrow = [dict(global_rules()[0], pattern=r"GENERATED ROOT PASSWORD: \w+")]
    line = entrypoint_line("abcd+efgh/ijkl")
    assert "efgh/ijkl" in agent_apply(narrow, line)


def test_compose_gives_the_agent_the_same_rules():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["services"]["datadog-agent"]["environment"]
    # The variable replaces the file's key (GlobalProcessingRules reads one or the other): equal, so
    # that the file mounted at /etc/datadog-agent/datadog.yaml and the variable say the same.
    assert json.loads(env["DD_LOGS_CONFIG_PROCESSING_RULES"]) == global_rules()
    assert env["DD_LOGS_CONFIG_CONTAINER_COLLECT_ALL"] == "true"
