"""docs/agent.md's on-host instructions: valid shell, and the API key reaches every Agent process.

The Agent's processes are systemd units of their own; the trace agent's and the process agent's units
do not inherit what a drop-in on datadog-agent.service sets (DataDog/datadog-agent,
pkg/fleet/installer/packages/embedded/tmpl/gen/debrpm/datadog-agent-trace.service: its own
`EnvironmentFile=-/etc/datadog-agent/environment`, no reference to the core unit's environment).
"""

import re
import subprocess

from conftest import AGENT_CONFIG

DOC = AGENT_CONFIG.parent / "docs" / "agent.md"
# The units of the Agent that talk to Datadog with the API key, as the packages install them.
UNITS = ("datadog-agent", "datadog-agent-trace", "datadog-agent-process")


def shell_blocks():
    return re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.S)


def test_every_shell_block_parses():
    for block in shell_blocks():
        result = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
        assert result.returncode == 0, (block, result.stderr)


def test_the_api_key_reaches_every_agent_unit():
    script = "\n".join(shell_blocks())
    assert re.search(r"DD_API_KEY=.*/etc/datadog-agent/environment", script, flags=re.S)
    loop = re.search(r"for unit in ([^;]+); do(.*?)done", script, flags=re.S)
    assert loop, "a drop-in per unit"
    assert set(loop.group(1).split()) >= set(UNITS), loop.group(1)
    assert "EnvironmentFile=-/etc/datadog-agent/environment" in loop.group(2)
    assert "$unit.service.d" in loop.group(2)
    # Not the command that reaches the core Agent only.
    assert not re.search(r"systemctl edit datadog-agent\b(?!-)", script)
