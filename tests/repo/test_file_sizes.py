"""No source file of the three crates over 600 lines: a module that grows past that has taken on a
second job (docs/architecture.md). A module's unit tests count too; when they would take it past the
limit they move to a `tests.rs` of their own beside it (src/config/tests.rs)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CRATES = ["src", "loadgen/src", "provision/src"]
MAX_LINES = 600


def test_no_source_file_is_over_600_lines():
    sizes = {path.relative_to(ROOT).as_posix(): len(path.read_text().splitlines())
             for crate in CRATES for path in (ROOT / crate).rglob("*.rs")}
    assert len(sizes) > 40, sizes  # the walk found the crates
    assert {path: lines for path, lines in sizes.items() if lines > MAX_LINES} == {}
