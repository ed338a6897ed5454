"""bench-build: what the second exporter (Cargo feature `datadog-opentelemetry`, on by default) adds
to the service's build: binary size and build time, with the feature and without it.

Each build is a clean `cargo build --release --locked -p apm-demo --bin apm-demo` in a throwaway
target directory (crate sources come from Cargo's cache, nothing is downloaded), one after the other:
the default features, then `--no-default-features`. Build time is CPU seconds (user + system of cargo
and every compiler and linker it ran), which depend far less on what else the machine runs than wall
time does; both are printed, with the load average. Size is the binary as built (the release profile
keeps line tables for backtraces) and stripped (`strip`), which is what an image that strips ships.
"""

import argparse
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time

from common import ROOT, target_dir

BUILDS = [("with datadog-opentelemetry (default)", []), ("without (--no-default-features)", ["--no-default-features"])]


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def build(flags, directory):
    """Builds into `directory`; returns the figures of the build."""
    argv = ["cargo", "build", "--release", "--locked", "-p", "apm-demo", "--bin", "apm-demo", *flags]
    load = os.getloadavg()[0]
    cpu, wall = cpu_seconds(), time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, env={**os.environ, "CARGO_TARGET_DIR": directory},
                          capture_output=True, text=True)
    cpu, wall = cpu_seconds() - cpu, time.monotonic() - wall
    if done.returncode:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    binary = os.path.join(directory, "release", "apm-demo")
    stripped = binary + ".stripped"
    subprocess.run(["strip", "-o", stripped, binary], check=True)
    return {"cpu_s": cpu, "wall_s": wall, "load_before": load, "load_after": os.getloadavg()[0],
            "crates": len(re.findall(r"^\s+Compiling ", done.stderr, re.M)),
            "size": os.path.getsize(binary), "stripped": os.path.getsize(stripped)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    if not shutil.which("strip"):
        raise SystemExit("strip is missing (Debian's binutils)")
    figures = {}
    parent = os.path.join(target_dir(), "bench-build")
    os.makedirs(parent, exist_ok=True)
    for label, flags in BUILDS:
        with tempfile.TemporaryDirectory(dir=parent) as directory:
            figures[label] = f = build(flags, directory)
        print(f"  {label:37} {f['crates']:>4} crates  {f['cpu_s']:>6.0f} CPU s  {f['wall_s']:>5.0f} s wall  "
              f"binary {f['size'] / 2**20:5.1f} MiB, stripped {f['stripped'] / 2**20:5.1f} MiB  "
              f"(load average {f['load_before']:.1f} -> {f['load_after']:.1f})", flush=True)
    on, off = (figures[label] for label, _ in BUILDS)
    print(f"\nthe feature adds {on['crates'] - off['crates']} crates, {on['cpu_s'] - off['cpu_s']:.0f} CPU s "
          f"(x{on['cpu_s'] / off['cpu_s']:.2f}), {on['wall_s'] - off['wall_s']:+.0f} s wall, "
          f"{(on['stripped'] - off['stripped']) / 2**20:.1f} MiB stripped (x{on['stripped'] / off['stripped']:.2f}; "
          f"{(on['size'] - off['size']) / 2**20:.1f} MiB as built)")


if __name__ == "__main__":
    main()
