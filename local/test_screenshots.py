"""The docs' pictures: each one the README or a docs page names is in docs/, a PNG under the budget,
and one that `make screenshots` (local/screenshots.py) makes; and the script still makes every one of
them from real runs (the session's `make local` and `FAULT=routeLatencyTailMs` runs, local/runs.py).
Not a pixel comparison: a picture differs from run to run."""

import re
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local"))

import screenshots  # noqa: E402

pytest_plugins = ["runs"]  # the runs and the browser the tests share (local/runs.py)

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PNG = b"\x89PNG\r\n\x1a\n"


def named_pictures():
    """{picture file name: [the docs that show it]}, from Markdown image links to a .png."""
    found = {}
    for doc in DOCS:
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+\.png)\)", doc.read_text()):
            path = (doc.parent / target).resolve()
            assert path.parent == ROOT / "docs", f"{doc.name}: {target} is not in docs/"
            found.setdefault(path.name, []).append(doc.relative_to(ROOT).as_posix())
    return found


def size(path):
    """(width, height) of a PNG, from its header."""
    data = path.read_bytes()
    assert data.startswith(PNG), f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_every_picture_the_docs_name_is_there_small_and_made_by_make_screenshots():
    named = named_pictures()
    assert set(named) == set(screenshots.PICTURES), (
        f"the docs name {sorted(named)}; `make screenshots` makes {sorted(screenshots.PICTURES)}")
    for name, docs in named.items():
        path = ROOT / "docs" / name
        assert path.exists(), f"{name}, named in {docs}, is missing: `make screenshots` makes it"
        assert path.stat().st_size < screenshots.MAX_BYTES, f"{name}: {path.stat().st_size} bytes"
        width, height = size(path)
        assert width >= 600 and height >= 100, (name, width, height)
    # docs/local.md and docs/faults.md show them; the README at least two, one above the fold (before
    # its first second-level section after the front door's "Two commands").
    shown = {doc for docs in named.values() for doc in docs}
    assert {"docs/local.md", "docs/faults.md"} <= shown
    assert sum(docs.count("README.md") for docs in named.values()) >= 2, named
    readme = (ROOT / "README.md").read_text()
    fold = readme.index("\n## ", readme.index("## Two commands") + 1)
    assert len(re.findall(r"!\[[^\]]*\]\([^)]+\.png\)", readme[:fold])) == 1


def test_make_screenshots_runs_the_script_on_a_run_and_a_fault_run_into_docs():
    plan = subprocess.run(["make", "-n", "--no-print-directory", "screenshots"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout
    runs = re.findall(r"^OUT=(\S+) (FAULT=\S+ )?make .*local$", plan, re.M)
    assert [fault for _, fault in runs] == ["", "FAULT=routeLatencyTailMs "], plan
    assert f"local/screenshots.py --run {runs[0][0]} --fault-run {runs[1][0]} --out docs" in plan


def test_the_script_makes_every_picture_from_real_runs(local_run, fault_run, tmp_path, chromium):
    written = screenshots.photograph(local_run[2], fault_run[1], tmp_path, chromium)
    assert [p.name for p in written] == list(screenshots.PICTURES)
    for path in written:
        assert path.stat().st_size < screenshots.MAX_BYTES, f"{path.name}: {path.stat().st_size} bytes"
        width, height = size(path)
        assert width >= 600 and height >= 100, (path.name, width, height)
