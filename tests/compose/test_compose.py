"""docker-compose.yml against the compose specification, its wiring, and the Dockerfiles' lint.

No Docker engine runs here: the compose file is validated with check-jsonschema's vendored copy of
the compose-spec schema, and its wiring (mounts, agent host, tags, secrets) is read as data.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
VENV_BIN = Path(sys.executable).parent
# The no-account command, as docs/compose.md and compose's own messages give it.
NO_ACCOUNT = {"COMPOSE_PROFILES": "local", "DD_API_KEY": "unused",  # pragma: allowlist secret
              "MYSQL_ROOT_PASSWORD": "local", "MYSQL_DATADOG_PASSWORD": "local",  # pragma: allowlist secret
              "MYSQL_APP_PASSWORD": "local"}  # pragma: allowlist secret
NO_ACCOUNT_COMMAND = " ".join(f"{k}={v}" for k, v in NO_ACCOUNT.items()) + " docker compose up"
COMPOSE_V1 = Path("/usr/bin/docker-compose")


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE.read_text())


def service(compose, name):
    return compose["services"][name]


def bind_mounts(svc):
    """(source, target) of each bind mount written `./source:target[:mode]`."""
    mounts = []
    for volume in svc.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith(("./", "/")):
            mounts.append((source, target))
    return mounts


def test_compose_file_validates_against_the_compose_specification():
    result = subprocess.run([str(VENV_BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validator_rejects_a_broken_compose_file(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  app:\n    ports: 5050\n    depends_on: {db: {condition: whenever}}\n")
    result = subprocess.run([str(VENV_BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(broken)],
                            capture_output=True, text=True)
    assert result.returncode != 0


def test_the_demo_has_its_services(compose):
    assert set(compose["services"]) == {"app", "datadog-agent", "test-agent", "mysql", "loadgen"}


def test_every_repository_mount_exists(compose):
    for name, svc in compose["services"].items():
        for source, _ in bind_mounts(svc):
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"


def test_app_sends_traces_to_the_agent_service(compose):
    env = service(compose, "app")["environment"]
    assert env["DD_AGENT_HOST"] == "datadog-agent"
    assert env["DD_TRACE_AGENT_PORT"] == "8126"
    assert env["LOG_FORMAT"] == "json"
    # In the local profile the test agent answers to the same name.
    aliases = service(compose, "test-agent")["networks"]["default"]["aliases"]
    assert "datadog-agent" in aliases


def test_loadgen_sends_its_spans_to_the_agent_service_with_the_apps_tags(compose):
    """Each request a trace that loadgen starts with its own client span (issue 24): the span goes
    where the app's go, with the app's environment and version (tests/containers judges the traces)."""
    app, loadgen = service(compose, "app"), service(compose, "loadgen")
    env = loadgen["environment"]
    agent = app["environment"]
    assert env["LOADGEN_TRACE_AGENT"] == f"http://{agent['DD_AGENT_HOST']}:{agent['DD_TRACE_AGENT_PORT']}"
    assert env["DD_SERVICE"] == "loadgen"
    assert (env["DD_ENV"], env["DD_VERSION"]) == (agent["DD_ENV"], agent["DD_VERSION"])
    for tag in ("service", "env", "version"):
        assert loadgen["labels"][f"com.datadoghq.tags.{tag}"] == env[f"DD_{tag.upper()}"], tag
    # The health check's five /health requests report no spans (an empty --trace-agent is none): the
    # app does not trace /health, so each would be a trace of loadgen alone.
    check = loadgen["healthcheck"]["test"]
    assert check[check.index("--trace-agent") + 1] == ""


def test_app_has_unified_service_tagging(compose):
    app = service(compose, "app")
    for tag in ("service", "env", "version"):
        assert app["labels"][f"com.datadoghq.tags.{tag}"] == app["environment"][f"DD_{tag.upper()}"], tag
    assert "127.0.0.1:${APP_PORT:-5050}:5050" in app["ports"], "published on loopback, port movable"


def test_agent_reads_agent_config_where_the_agent_looks(compose):
    mounts = dict((target, source) for source, target in bind_mounts(service(compose, "datadog-agent")))
    assert mounts["/etc/datadog-agent/datadog.yaml"] == "./agent-config/datadog.yaml"
    assert mounts["/conf.d"] == "./agent-config/conf.d"
    assert mounts["/checks.d"] == "./agent-config/checks.d"
    for host_path in ("/proc/", "/sys/fs/cgroup/", "/var/run/docker.sock"):
        assert host_path in {source for source, _ in bind_mounts(service(compose, "datadog-agent"))}, host_path
    docker_sock = next(v for v in service(compose, "datadog-agent")["volumes"] if "docker.sock" in v)
    assert docker_sock.endswith(":ro"), "the Docker socket read-only"


def test_agent_opens_apm_and_dogstatsd_to_the_other_containers(compose):
    env = service(compose, "datadog-agent")["environment"]
    for key in ("DD_APM_ENABLED", "DD_APM_NON_LOCAL_TRAFFIC", "DD_DOGSTATSD_NON_LOCAL_TRAFFIC", "DD_LOGS_ENABLED",
                "DD_LOGS_CONFIG_CONTAINER_COLLECT_ALL"):
        assert env[key] == "true", key


def test_agent_refuses_to_start_without_an_api_key(compose):
    key = service(compose, "datadog-agent")["environment"]["DD_API_KEY"]
    assert re.fullmatch(r"\$\{DD_API_KEY:\?.+\}", key), "compose stops with a message when DD_API_KEY is unset"


def test_mysql_runs_the_setup_scripts_and_the_dbm_options_and_is_not_published(compose):
    mysql = service(compose, "mysql")
    mounts = dict((target, source) for source, target in bind_mounts(mysql))
    init = ROOT / mounts["/docker-entrypoint-initdb.d"]
    # The image runs them in name order: the app's schema exists before datadog-user.sh's
    # explain procedure is created in it.
    assert sorted(p.name for p in init.glob("*.sh"))[:2] == ["apm-demo-user.sh", "datadog-user.sh"]
    assert "./agent-config/mysql-conf/datadog-dbm.cnf:/etc/mysql/conf.d/datadog-dbm.cnf:ro" in mysql["volumes"]
    assert "ports" not in mysql
    assert "mysql-data:/var/lib/mysql" in mysql["volumes"]
    assert "mysql-data" in compose["volumes"]


def test_mysql_gets_the_passwords_of_its_users_and_nothing_the_image_would_act_on(compose):
    env = service(compose, "mysql")["environment"]
    # The official image creates a user with ALL on MYSQL_DATABASE from MYSQL_USER/MYSQL_PASSWORD
    # (docker-library/mysql 8.4/docker-entrypoint.sh, docker_setup_db): the app's user would get
    # more than its three privileges.
    assert not {"MYSQL_USER", "MYSQL_PASSWORD", "MYSQL_DATABASE"} & set(env)
    assert env["MYSQL_DATADOG_PASSWORD"].startswith("${MYSQL_DATADOG_PASSWORD:?")
    assert env["MYSQL_APP_PASSWORD"].startswith("${MYSQL_APP_PASSWORD:?")


def test_mysql_root_is_local_with_the_operators_password_never_a_generated_one(compose):
    env = service(compose, "mysql")["environment"]
    # The same entrypoint: MYSQL_ROOT_HOST defaults to '%' (docker_setup_env), and any host but
    # `localhost` gets a second root with ALL ... WITH GRANT OPTION (docker_setup_db).
    assert env["MYSQL_ROOT_HOST"] == "localhost"
    assert env["MYSQL_ROOT_PASSWORD"].startswith("${MYSQL_ROOT_PASSWORD:?")
    # MYSQL_RANDOM_ROOT_PASSWORD prints "GENERATED ROOT PASSWORD: ..." to the log the Agent collects;
    # MYSQL_ALLOW_EMPTY_PASSWORD leaves root without one.
    assert not {"MYSQL_RANDOM_ROOT_PASSWORD", "MYSQL_ALLOW_EMPTY_PASSWORD", "MYSQL_ROOT_PASSWORD_FILE"} & set(env)


def test_app_reaches_mysql_as_its_own_user_with_dbm_comments(compose):
    env = service(compose, "app")["environment"]
    assert {k: env[k] for k in ("MYSQL_HOST", "MYSQL_PORT", "MYSQL_DATABASE", "MYSQL_USER",
                                "DD_DBM_PROPAGATION_MODE")} == {
        "MYSQL_HOST": "mysql", "MYSQL_PORT": "3306", "MYSQL_DATABASE": "apm_demo",
        "MYSQL_USER": "apm_demo", "DD_DBM_PROPAGATION_MODE": "full"}
    # The same variable the mysql service creates the user with.
    assert env["MYSQL_PASSWORD"].startswith("${MYSQL_APP_PASSWORD:?")


def test_every_service_has_a_health_check_and_waits_for_health(compose):
    for name, svc in compose["services"].items():
        assert "healthcheck" in svc, name
        for dependency, condition in (svc.get("depends_on") or {}).items():
            assert condition["condition"] == "service_healthy", f"{name} -> {dependency}"
    # The app never waits for an agent or for MySQL: spans queue (and are dropped and counted)
    # while the agent is away, the database routes answer 503 while MySQL is.
    assert "depends_on" not in service(compose, "app")
    assert set(service(compose, "loadgen")["depends_on"]) == {"app"}


def test_health_checks_need_nothing_the_images_lack(compose):
    # The app's image has no curl: its binary answers its own health check.
    assert service(compose, "app")["healthcheck"]["test"] == ["CMD", "/usr/local/bin/apm-demo", "healthcheck"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["/usr/local/bin/apm-demo", "healthcheck"]' in dockerfile
    assert not re.search(r"apt-get install[^\n]*curl", dockerfile.split("\nFROM ")[-1])
    # mysqladmin ping exits 0 for a live server even on "access denied": no root password is needed.
    assert "-p" not in " ".join(service(compose, "mysql")["healthcheck"]["test"])


def test_the_no_account_command_sets_every_required_variable(compose):
    # Compose interpolates the whole file before it selects a profile's services, so every
    # `${VAR:?}` must be set by the no-account command too (docker/compose#11977).
    text = COMPOSE.read_text()
    required = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):\?", text))
    assert required == {"DD_API_KEY", "MYSQL_ROOT_PASSWORD", "MYSQL_DATADOG_PASSWORD", "MYSQL_APP_PASSWORD"}
    assert required <= set(NO_ACCOUNT)
    # The messages that name the command, and the docs, give it whole.
    assert re.findall(r"without an account run ([^}]*)\}", text) == [NO_ACCOUNT_COMMAND] * 2
    assert NO_ACCOUNT_COMMAND + " --build" in (ROOT / "docs" / "compose.md").read_text()
    # The app's database routes use MySQL whichever agent runs: no profile.
    assert "profiles" not in service(compose, "mysql")


@pytest.mark.skipif(not COMPOSE_V1.exists(), reason="Debian's docker-compose 1.29 is not installed")
def test_compose_v1_reads_the_file_with_the_no_account_command_and_names_a_missing_password(tmp_path):
    def config(env):
        # An empty working directory: no .env of the developer's is read.
        return subprocess.run([str(COMPOSE_V1), "--project-directory", str(tmp_path), "--file", str(COMPOSE),
                               "config", "--quiet"], capture_output=True, text=True, cwd=tmp_path,
                              env={"PATH": "/usr/bin:/bin", **env})
    assert config(NO_ACCOUNT).returncode == 0, config(NO_ACCOUNT).stderr
    for variable in ("MYSQL_APP_PASSWORD", "MYSQL_DATADOG_PASSWORD", "MYSQL_ROOT_PASSWORD", "DD_API_KEY"):
        result = config({k: v for k, v in NO_ACCOUNT.items() if k != variable})
        assert result.returncode != 0 and f"{variable} is not set" in result.stderr, result.stderr


def test_the_file_also_runs_under_compose_v1(compose):
    # Debian's docker-compose 1.29 (the runner of `make test-compose`) refuses a top-level `name:`
    # and `depends_on.<service>.required`; without them the file means the same to both.
    assert "name" not in compose
    for name, svc in compose["services"].items():
        for dependency, condition in (svc.get("depends_on") or {}).items():
            assert "required" not in condition, f"{name} -> {dependency}"


def test_test_agent_listens_beyond_its_own_loopback(compose):
    # ddapm-test-agent's --host defaults to 127.0.0.1 (ddapm_test_agent/agent.py, 1.69.1): the app's
    # spans would be refused from the next container.
    env = service(compose, "test-agent")["environment"]
    assert env["HOST"] == "0.0.0.0" and env["PORT"] == "8126"


def test_test_agent_image_is_the_version_the_tests_pin(compose):
    image = service(compose, "test-agent")["image"]
    pinned = re.search(r"^ddapm-test-agent==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert image == f"ghcr.io/datadog/dd-apm-test-agent/ddapm-test-agent:v{pinned}"


def test_no_secret_is_written_in_the_compose_file(compose):
    for name, svc in compose["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if re.search(r"KEY|PASSWORD|SECRET|TOKEN", key):
                assert re.fullmatch(r"\$\{[A-Z_]+(:[?-].*)?\}", str(value)), f"{name}.{key} is written in the file"


def test_env_example_documents_every_variable_compose_reads():
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text()))
    documented = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    assert used <= documented, f"not in .env.example: {sorted(used - documented)}"
    assert not re.search(r"^(DD_API_KEY|DD_APP_KEY|MYSQL_\w*PASSWORD)=\S", (ROOT / ".env.example").read_text(), re.M)
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT)
    assert ignored.returncode == 0, ".env is git-ignored"


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "loadgen/Dockerfile"])
def test_dockerfile_passes_hadolint(dockerfile):
    result = subprocess.run([str(VENV_BIN / "hadolint"), "--config", str(ROOT / ".hadolint.yaml"), str(ROOT / dockerfile)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\n")
    result = subprocess.run([str(VENV_BIN / "hadolint"), str(bad)], capture_output=True, text=True)
    assert result.returncode != 0


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "loadgen/Dockerfile"])
def test_image_runs_as_a_non_root_user_with_the_binary_only(dockerfile):
    text = (ROOT / dockerfile).read_text()
    final_stage = text.split("\nFROM ")[-1]
    users = re.findall(r"^USER\s+(\S+)", final_stage, re.M)
    assert users and users[-1] not in ("root", "0"), "the last USER of the runtime stage is not root"
    copies = re.findall(r"^COPY\s+(.*)$", final_stage, re.M)
    assert len(copies) == 1 and copies[0].startswith("--from=build"), copies
    assert "RUN --mount=type=cache" in text, "dependencies cached between builds"


# What each service may keep, and why: nothing, except the Agent (docker-compose.yml says why; no Agent
# runs here to find a narrower set). tests/containers checks the same on the running containers.
HARDENED = {"app", "test-agent", "mysql", "loadgen"}


def test_every_service_but_the_agent_drops_every_capability_on_a_read_only_root(compose):
    assert set(compose["services"]) - HARDENED == {"datadog-agent"}
    for name in HARDENED:
        svc = service(compose, name)
        assert svc["cap_drop"] == ["ALL"] and "cap_add" not in svc, name
        assert svc["read_only"] is True, name
        assert svc["security_opt"] == ["no-new-privileges:true"], name
        assert "privileged" not in svc, name
    # The two images with a root user run as a named other one: mysql as its image's mysql user
    # (uid 999 in the official image: docker-library/mysql, 8.4/Dockerfile.oracle), the test agent as
    # nobody. The app's and loadgen's images set their own (test_image_runs_as_a_non_root_user...).
    assert service(compose, "mysql")["user"] == "999:999"
    assert service(compose, "test-agent")["user"] == "65534:65534"
    assert "user" not in service(compose, "app") and "user" not in service(compose, "loadgen")
    # A read-only root: mysql writes its socket and pid file and temporary files on tmpfs, its data
    # on its volume; nothing else writes.
    assert {entry.split(":")[0] for entry in service(compose, "mysql")["tmpfs"]} == {"/var/run/mysqld", "/tmp"}
    agent = service(compose, "datadog-agent")
    assert agent["security_opt"] == ["no-new-privileges:true"]
    assert not {"cap_add", "privileged"} & set(agent)


def test_the_hardening_keys_are_ones_compose_v1_also_applies(tmp_path):
    if not COMPOSE_V1.exists():
        pytest.skip("Debian's docker-compose 1.29 is not installed")
    # `config` prints the file as v1.29 understood it: a key it dropped would be missing there.
    result = subprocess.run([str(COMPOSE_V1), "--project-directory", str(tmp_path), "--file", str(COMPOSE),
                             "config"], capture_output=True, text=True, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", **NO_ACCOUNT})
    assert result.returncode == 0, result.stderr
    seen = yaml.safe_load(result.stdout)["services"]
    for name in HARDENED:
        assert seen[name]["cap_drop"] == ["ALL"] and seen[name]["read_only"] is True, name
        assert seen[name]["security_opt"] == ["no-new-privileges:true"], name
    assert seen["mysql"]["user"] == "999:999" and seen["mysql"]["tmpfs"] == service(
        yaml.safe_load(COMPOSE.read_text()), "mysql")["tmpfs"]


def interpolated(value, env):
    """A compose value with `${NAME}`, `${NAME:-default}` and `${NAME:?message}` read from `env`."""
    def one(match):
        name, sep, rest = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        assert sep != ":?", f"{name} must be set: {rest}"
        return rest if sep == ":-" else ""
    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:-|:\?)([^}]*))?\}", one, str(value))


@pytest.mark.parametrize("exporter", ["opentelemetry-datadog", "datadog-opentelemetry"])
def test_the_apps_environment_is_a_configuration_the_service_accepts_with_each_exporter(compose, exporter):
    """The app container's environment, as compose renders it with TRACE_EXPORTER set in .env, given
    to the release binary's own health check: exit 1 (no service answers) means every setting was
    accepted; a refused setting exits 2, naming it."""
    bin_dir = subprocess.run([str(ROOT / "local" / "bin-dir.sh")], capture_output=True, text=True,
                             check=True).stdout.strip()
    env = {name: interpolated(value, {**NO_ACCOUNT, "TRACE_EXPORTER": exporter})
           for name, value in service(compose, "app")["environment"].items()}
    assert env["TRACE_EXPORTER"] == exporter
    # Nothing listens there: the check fails after the configuration is read.
    env.update({"HOST": "127.0.0.1", "PORT": "9", "PATH": "/usr/bin:/bin"})
    result = subprocess.run([str(Path(bin_dir) / "apm-demo"), "healthcheck"], env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 1, result.stderr
    assert "invalid configuration" not in result.stderr


def test_loadgens_environment_and_health_check_are_a_configuration_loadgen_accepts(compose):
    """The loadgen container's environment as compose renders it, the app's address moved to a closed
    port of this machine, to the release loadgen for one request, and its health check's command
    line the same way: exit 1 (the request refused) means every setting was accepted; a refused one
    exits 2, naming it. (The agent's name resolves nowhere here: a warning, no failure.)"""
    bin_dir = subprocess.run([str(ROOT / "local" / "bin-dir.sh")], capture_output=True, text=True,
                             check=True).stdout.strip()
    loadgen = service(compose, "loadgen")
    env = {name: interpolated(value, NO_ACCOUNT) for name, value in loadgen["environment"].items()}
    env.update({"LOADGEN_URL": "http://127.0.0.1:9", "LOADGEN_REQUESTS": "1", "PATH": "/usr/bin:/bin"})
    result = subprocess.run([str(Path(bin_dir) / "loadgen")], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1, result.stderr
    _, program, url, *args = loadgen["healthcheck"]["test"]
    assert (program, url) == ("loadgen", "http://app:5050")
    result = subprocess.run([str(Path(bin_dir) / "loadgen"), "http://127.0.0.1:9", *args], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
