"""The container engine the compose suite runs on, and the stand-in base images it needs.

Test scaffolding for a machine that reaches Debian's, PyPI's and the crate registry but no image
registry. Nothing here goes into the images users build: the Dockerfiles and docker-compose.yml run
unchanged, on base images made locally under the exact names they use.

- Engine: Debian's `docker.io` (dockerd 20.10), started here if it is not running, driven with its own
  client `/usr/bin/docker` (the machine's newer `/usr/local/bin/docker` has no buildx and refuses
  BuildKit builds).
- Compose: Debian's `docker-compose` 1.29 (Compose v2 is in no registry reachable here), building
  through that same client with BuildKit (`COMPOSE_DOCKER_CLI_BUILD=1`), so the Dockerfiles' cache
  mounts work as under Compose v2.
- `debian:bookworm-slim`: `mmdebstrap --variant=minbase bookworm`, imported. Debian's real slim image
  is close to minbase; image sizes are reported as what each image adds above its base.
- `rust:1.95-slim-bookworm`: that base, gcc and libc6-dev (as the official image has), and the
  toolchain this machine already has (nothing downloaded).
- the test agent's image, under the name compose uses: that base and `ddapm-test-agent` at the version
  pinned in requirements.txt, with the official image's environment.
- `mysql:8.4`: that base and Debian's MariaDB 10.11 (`mariadb-server`), its `mysql` user uid 999 as in
  the official image, with an entrypoint (mysql_stand_in/docker-entrypoint.sh) that does what the
  official image's does for this project's compose file and Kubernetes manifest: first-start
  initialisation, the root password and root's host (MYSQL_ROOT_PASSWORD[_FILE], MYSQL_ROOT_HOST),
  /docker-entrypoint-initdb.d run with docker_process_sql, /etc/mysql/conf.d read. Test scaffolding
  only: MariaDB is not MySQL 8.4 (no caching_sha2_password, its own performance_schema), see
  docs/compose.md.
- Each stand-in carries a label with the hash of its definition, and is rebuilt when that changes.
- HTTPS from a build container verifies only against this machine's CA bundle, so the two build-time
  stand-ins carry a copy of it. That is this machine's quirk, not the project's.
"""

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKER = "/usr/bin/docker"
COMPOSE = "/usr/bin/docker-compose"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PACKAGES = ["docker.io", "docker-compose", "mmdebstrap"]

DEBIAN = "debian:bookworm-slim"
RUST = "rust:1.95-slim-bookworm"
MYSQL_STAND_IN = Path(__file__).resolve().parent / "mysql_stand_in"
STAND_IN_LABEL = "apm-demo.stand-in"


def compose_image(pattern: str, what: str) -> str:
    """An image name as docker-compose.yml spells it."""
    match = re.search(rf"image: ({pattern})", (ROOT / "docker-compose.yml").read_text())
    assert match, f"docker-compose.yml names no {what} image"
    return match.group(1)


def test_agent_image() -> str:
    return compose_image(r"ghcr\.io/datadog/dd-apm-test-agent/ddapm-test-agent:\S+", "test agent")


def mysql_image() -> str:
    return compose_image(r"mysql:\S+", "MySQL")


def pinned(package: str) -> str:
    """The version of `package` pinned in requirements.txt."""
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip().lower() == package:
            return version.strip()
    raise AssertionError(f"{package} is not pinned in requirements.txt")


def env(extra=None) -> dict:
    """The environment for docker and docker-compose: the engine's own client first on PATH."""
    environment = dict(os.environ, **(extra or {}))
    environment.update(DOCKER_BUILDKIT="1", COMPOSE_DOCKER_CLI_BUILD="1",
                       PATH="/usr/bin:" + environment.get("PATH", ""))
    return environment


def run(*args, check=True, timeout=600, env_extra=None, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), capture_output=True, text=True, env=env(env_extra),
                            timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {result.returncode}:\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def install_if_missing() -> None:
    missing = [p for p, exe in zip(PACKAGES, ["/usr/sbin/dockerd", COMPOSE, "/usr/bin/mmdebstrap"])
               if not Path(exe).exists()]
    if missing:
        print(f"installing {' '.join(missing)}", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       stdout=subprocess.DEVNULL)


def engine_running() -> bool:
    return run(DOCKER, "info", check=False, timeout=30).returncode == 0


def start_engine(log: Path):
    """Starts dockerd if it is not running; returns the process it started, or None."""
    if engine_running():
        return None
    print("starting dockerd", flush=True)
    daemon = subprocess.Popen(["/usr/sbin/dockerd"], stdout=log.open("w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise AssertionError(f"dockerd exited {daemon.returncode}:\n{log.read_text()[-3000:]}")
        if engine_running():
            return daemon
        time.sleep(0.5)
    daemon.terminate()
    raise AssertionError(f"dockerd did not answer within 60 s:\n{log.read_text()[-3000:]}")


def stop_engine(daemon) -> None:
    if daemon is not None:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()


def label(image: str, key: str) -> str:
    """A label of a local image; empty when the image or the label is missing."""
    result = run(DOCKER, "image", "inspect", "--format", f'{{{{index .Config.Labels "{key}"}}}}',
                 image, check=False, timeout=30)
    return result.stdout.strip() if result.returncode == 0 else ""


def definition_digest(dockerfile: str, files) -> str:
    """A stand-in's Dockerfile and the files it copies, hashed: the image is rebuilt when they change."""
    digest = hashlib.sha256(dockerfile.encode())
    for path in sorted(files):
        digest.update(b"\0" + path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def build_if_changed(name: str, dockerfile: str, files=()) -> float:
    """Builds `name` from `dockerfile` and `files` unless the image has this definition already;
    returns the seconds it took (0 when it was up to date)."""
    digest = definition_digest(dockerfile, files)
    if label(name, STAND_IN_LABEL) == digest:
        return 0.0
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp)
        for path in files:
            shutil.copy(path, context / path.name)
        build(name, f"{dockerfile}LABEL {STAND_IN_LABEL}={digest}\n", context)
    return time.monotonic() - started


def has_image(name: str) -> bool:
    return run(DOCKER, "image", "inspect", name, check=False, timeout=30).returncode == 0


def build(name: str, dockerfile: str, context: Path) -> None:
    (context / "Dockerfile").write_text(dockerfile)
    run(DOCKER, "build", "--tag", name, str(context), timeout=900)


def make_base_images() -> dict:
    """Makes each stand-in base image that is missing; returns the seconds each one took."""
    took = {}
    if not has_image(DEBIAN):
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:
            tar = Path(tmp) / "bookworm.tar"
            subprocess.run(["mmdebstrap", "--quiet", "--variant=minbase", "bookworm", str(tar)],
                           check=True, timeout=600)
            run(DOCKER, "import", "--change", 'CMD ["bash"]', str(tar), DEBIAN)
        took[DEBIAN] = time.monotonic() - started
    if not has_image(RUST):
        started = time.monotonic()
        sysroot = Path(subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True,
                                      check=True).stdout.strip())
        (ROOT / "target").mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(dir=ROOT / "target") as tmp:
            context = Path(tmp)
            # bin, lib and libexec are the toolchain; share/ is its documentation.
            for part in ("bin", "lib", "libexec", "etc"):
                if (sysroot / part).exists():
                    shutil.copytree(sysroot / part, context / "toolchain" / part, symlinks=True,
                                    copy_function=link_or_copy)
            shutil.copy(CA_BUNDLE, context / "ca-certificates.crt")
            build(RUST, f"""FROM {DEBIAN}
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \\
    && rm -rf /var/lib/apt/lists/*
COPY toolchain /usr/local/rust
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/rust/bin:$PATH
RUN mkdir -p /usr/local/cargo/bin && cargo --version && rustc --version
""", context)
        took[RUST] = time.monotonic() - started
    agent = test_agent_image()
    # As the official image (DataDog/dd-apm-test-agent's Dockerfile): `python` on PATH (compose's
    # health check calls it), its environment, root as its user.
    seconds = build_if_changed(agent, f"""FROM {DEBIAN}
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python-is-python3 \\
    && rm -rf /var/lib/apt/lists/*
COPY ca-certificates.crt /tmp/ca.crt
RUN python3 -m venv /opt/venv \\
    && PIP_CERT=/tmp/ca.crt /opt/venv/bin/pip install --no-cache-dir --quiet \\
       ddapm-test-agent=={pinned("ddapm-test-agent")} "protobuf=={pinned("protobuf")}" \\
    && rm /tmp/ca.crt
ENV PATH=/opt/venv/bin:$PATH SNAPSHOT_CI=1 LOG_LEVEL=INFO SNAPSHOT_DIR=/snapshots \\
    VCR_CASSETTES_DIRECTORY=/vcr-cassettes
EXPOSE 8126
CMD ["ddapm-test-agent"]
""", [CA_BUNDLE])
    if seconds:
        took[agent] = seconds
    # The package's postinst initialises /var/lib/mysql: emptied, so that the first start of a
    # container initialises it as the official image does. The official image's layout
    # (docker-library/mysql, 8.4/Dockerfile.oracle): the `mysql` user and group are 999 (made first,
    # so that the package's postinst keeps them), the datadir and /var/run/mysqld belong to it with
    # mode 1777, /etc/mysql/conf.d and /docker-entrypoint-initdb.d exist, the datadir is a volume.
    mysql = mysql_image()
    seconds = build_if_changed(mysql, f"""FROM {DEBIAN}
RUN groupadd --system --gid 999 mysql \\
    && useradd --system --uid 999 --gid 999 --home-dir /var/lib/mysql --no-create-home mysql \\
    && apt-get update && apt-get install -y --no-install-recommends mariadb-server mariadb-client \\
    && rm -rf /var/lib/apt/lists/* /var/lib/mysql /etc/mysql/my.cnf \\
    && mkdir -p /var/lib/mysql /var/run/mysqld /etc/mysql/conf.d /docker-entrypoint-initdb.d \\
    && chown mysql:mysql /var/lib/mysql /var/run/mysqld && chmod 1777 /var/lib/mysql /var/run/mysqld \\
    && test "$(id -u mysql):$(id -g mysql)" = 999:999
COPY my.cnf /etc/mysql/my.cnf
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 755 /usr/local/bin/docker-entrypoint.sh && mysqld --version && mysqladmin --version
VOLUME /var/lib/mysql
ENTRYPOINT ["docker-entrypoint.sh"]
EXPOSE 3306
CMD ["mysqld"]
""", [MYSQL_STAND_IN / "docker-entrypoint.sh", MYSQL_STAND_IN / "my.cnf"])
    if seconds:
        took[mysql] = seconds
    return took


def link_or_copy(source, destination):
    """A hard link where the file system allows it (the toolchain is 600 MB), else a copy."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def image_size(name: str) -> int:
    return int(run(DOCKER, "image", "inspect", "--format", "{{.Size}}", name).stdout.strip())
