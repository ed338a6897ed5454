"""Writes docs/local.md's `make local` example from a real run: `DURATION=5s make local`, timed, and
the end of what it printed. local/test_local.py fails when a run drifts from the example (counts
differ, latencies or the wall time move by more than a factor); then run this again:

    .venv/bin/python local/docs_example.py
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "local.md"
BEGIN, END = "<!-- make-local-example: written by local/docs_example.py -->", "<!-- /make-local-example -->"
DURATION = "5s"
SUMMARY_HEADING = "== what Datadog's APM service page would show"


def summary_section(out):
    return out[out.index(SUMMARY_HEADING):].rstrip("\n")


def example(seconds, section):
    return (f"{BEGIN}\nThe end of a `DURATION={DURATION} make local` run on a warm machine (measured: "
            f"{seconds:.1f} s from start to end, {DURATION} of it the load):\n\n```\n{section}\n```\n{END}")


def documented():
    """(seconds, section) of the example in docs/local.md."""
    text = DOC.read_text()
    block = text[text.index(BEGIN):text.index(END)]
    seconds = float(re.search(r"measured: ([\d.]+) s", block).group(1))
    section = block[block.index("```\n") + 4:block.rindex("\n```")]
    return seconds, section


def table(section):
    """{resource: [hits, errors, 4xx, span p50, span p99, client p50, client p99]} of a printed summary."""
    rows = {}
    for line in section.splitlines():
        match = re.match(r"((?:GET|POST|PUT|DELETE|PATCH) \S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", line)
        if match:
            rows[match.group(1)] = [float(v) for v in match.groups()[1:]]
    return rows


def main():
    env = dict(os.environ, DURATION=DURATION)
    subprocess.run(["make", "-s", "venv", "mariadb", "release"], cwd=ROOT, check=True)
    started = time.monotonic()
    result = subprocess.run(["make", "--no-print-directory", "local"], cwd=ROOT, env=env, capture_output=True,
                            text=True)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(result.stdout + result.stderr)
    section = summary_section(result.stdout).replace(str(ROOT), "/path/to/apm-demo")
    text = DOC.read_text()
    DOC.write_text(text[:text.index(BEGIN)] + example(seconds, section) + text[text.index(END) + len(END):])
    print(f"docs/local.md: the example of a {seconds:.1f} s run")


if __name__ == "__main__":
    main()
