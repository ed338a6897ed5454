"""The compose images' figures, for docs/compose.md: cold build, rebuild after a one-line change in
src/, and what each image adds above its base. Run by hand (it empties the build cache):

    .venv/bin/python tests/containers/figures.py

Needs the engine and the stand-in base images (`make test-compose` leaves both).
"""

import subprocess
import tempfile
import time
from pathlib import Path

import engine

IMAGES = {"apm-demo:figures": "Dockerfile", "apm-demo-loadgen:figures": "loadgen/Dockerfile"}


def build(context: Path, tag: str, dockerfile: str) -> float:
    started = time.monotonic()
    engine.run(engine.DOCKER, "build", "--quiet", "--tag", tag, "--file", str(context / dockerfile),
               str(context), timeout=1800)
    return time.monotonic() - started


def main() -> None:
    assert engine.engine_running(), "start dockerd first (make test-compose starts it)"
    engine.make_base_images()
    with tempfile.TemporaryDirectory(dir=engine.ROOT / "target") as tmp:
        context = Path(tmp)
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=engine.ROOT,
                               capture_output=True, text=True, check=True).stdout.split()
        for name in files:
            source = engine.ROOT / name
            if source.is_file():
                (context / name).parent.mkdir(parents=True, exist_ok=True)
                (context / name).write_bytes(source.read_bytes())
        engine.run(engine.DOCKER, "builder", "prune", "--all", "--force")
        for tag, dockerfile in IMAGES.items():
            print(f"cold build {dockerfile}: {build(context, tag, dockerfile):.0f} s", flush=True)
        routes = context / "src" / "routes.rs"
        routes.write_text(routes.read_text() + "\n// a one-line change\n")
        print(f"rebuild after a one-line change in src/: {build(context, 'apm-demo:figures', 'Dockerfile'):.0f} s")
    base = engine.image_size(engine.DEBIAN)
    for tag in IMAGES:
        size = engine.image_size(tag)
        print(f"{tag}: {size / 1e6:.1f} MB, {(size - base) / 1e6:.1f} MB above {engine.DEBIAN}")
    binary = engine.run(engine.DOCKER, "run", "--rm", "--entrypoint", "stat", "apm-demo:figures",
                        "-c", "%s", "/usr/local/bin/apm-demo").stdout.strip()
    print(f"apm-demo binary in the image: {int(binary) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
