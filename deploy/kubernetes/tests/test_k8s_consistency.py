"""The manifests agree with each other and with the service they run.

Ports, probe paths, labels and selectors across objects; the container against the Dockerfile, the
service's configuration (src/config.rs) and its routes; the grace period against the service's own
shutdown; resources against what the benchmarks measured.
"""

import json
import re

import pytest
import yaml

from k8s_common import ROOT, env_of, find, load_objects, pod_templates, rust_duration_const

OBJECTS = load_objects()
DEPLOYMENT = find(OBJECTS, "Deployment", "apm-demo")
POD = DEPLOYMENT["spec"]["template"]
APP = POD["spec"]["containers"][0]
MYSQL = find(OBJECTS, "StatefulSet", "mysql")
MYSQL_POD = MYSQL["spec"]["template"]
MYSQL_CONTAINER = MYSQL_POD["spec"]["containers"][0]
JOB = find(OBJECTS, "Job", "loadgen")
CRONJOB = find(OBJECTS, "CronJob", "loadgen")


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def container_port(container, name):
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    return ports[name]


def config_env_names():
    """Every environment variable the service reads (clap's `env = "NAME"` in src/config.rs)."""
    return set(re.findall(r'env = "([A-Z0-9_]+)"', (ROOT / "src/config.rs").read_text()))


def cargo_version():
    return re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)


# ---- ports, probes, selectors ----


def test_the_app_listens_where_the_image_and_the_service_say():
    dockerfile = (ROOT / "Dockerfile").read_text()
    image_port = int(re.search(r"^EXPOSE (\d+)$", dockerfile, re.M).group(1))
    assert image_port == 5050
    assert container_port(APP, "http") == image_port
    assert env_of(APP)["PORT"]["value"] == str(image_port)
    service = find(OBJECTS, "Service", "apm-demo")
    (port,) = service["spec"]["ports"]
    assert port["port"] == image_port and port["targetPort"] == "http"


def test_probes_ask_the_health_route_on_the_app_port():
    # The route the service mounts outside its limits, faults and tracing (src/lib.rs).
    assert 'route("/health", get(routes::health)' in (ROOT / "src/lib.rs").read_text()
    for probe in ("readinessProbe", "livenessProbe"):
        get = APP[probe]["httpGet"]
        assert get == {"path": "/health", "port": "http"}, probe


def test_every_selector_selects_the_pods_it_is_for():
    labels = POD["metadata"]["labels"]
    assert selects(DEPLOYMENT["spec"]["selector"]["matchLabels"], labels)
    assert selects(find(OBJECTS, "Service", "apm-demo")["spec"]["selector"], labels)
    assert selects(find(OBJECTS, "PodDisruptionBudget", "apm-demo")["spec"]["selector"]["matchLabels"], labels)
    mysql_labels = MYSQL_POD["metadata"]["labels"]
    assert selects(MYSQL["spec"]["selector"]["matchLabels"], mysql_labels)
    assert selects(find(OBJECTS, "Service", "mysql")["spec"]["selector"], mysql_labels)
    # No selector catches another component's pods.
    assert not selects(find(OBJECTS, "Service", "apm-demo")["spec"]["selector"], mysql_labels)
    assert not selects(find(OBJECTS, "Service", "mysql")["spec"]["selector"], labels)


def test_autoscaler_and_budget_fit_the_deployment():
    hpa = find(OBJECTS, "HorizontalPodAutoscaler", "apm-demo")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "apm-demo"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    # Utilization is a share of the request: without a CPU request the autoscaler has nothing to divide by.
    assert APP["resources"]["requests"]["cpu"]
    assert hpa["spec"]["minReplicas"] == DEPLOYMENT["spec"]["replicas"]
    pdb = find(OBJECTS, "PodDisruptionBudget", "apm-demo")
    # A drain can always evict one pod and still leave one serving.
    assert 0 < pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    rolling = DEPLOYMENT["spec"]["strategy"]
    assert rolling["type"] == "RollingUpdate" and rolling["rollingUpdate"]["maxUnavailable"] == 0


def test_loadgen_targets_the_app_service():
    service = find(OBJECTS, "Service", "apm-demo")
    url = env_of(JOB["spec"]["template"]["spec"]["containers"][0])["LOADGEN_URL"]["value"]
    assert url == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"


def test_the_cronjob_runs_the_job_pod():
    assert CRONJOB["spec"]["jobTemplate"]["spec"]["template"] == JOB["spec"]["template"]
    for key in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        assert CRONJOB["spec"]["jobTemplate"]["spec"][key] == JOB["spec"][key]


def test_the_run_ends_before_its_deadline():
    env = env_of(JOB["spec"]["template"]["spec"]["containers"][0])
    minutes = int(re.fullmatch(r"(\d+)m", env["LOADGEN_DURATION"]["value"]).group(1))
    assert minutes * 60 < JOB["spec"]["activeDeadlineSeconds"]


def test_the_app_reaches_mysql_by_its_service():
    service = find(OBJECTS, "Service", "mysql")
    env = env_of(APP)
    assert env["MYSQL_HOST"]["value"] == service["metadata"]["name"] == MYSQL["spec"]["serviceName"]
    assert service["spec"]["clusterIP"] == "None"  # headless, as a StatefulSet's governing service
    assert int(env["MYSQL_PORT"]["value"]) == service["spec"]["ports"][0]["port"]
    assert container_port(MYSQL_CONTAINER, "mysql") == service["spec"]["ports"][0]["port"]


def test_network_policies_let_through_what_the_demo_needs():
    policies = [o for _, o in OBJECTS if o["kind"] == "NetworkPolicy"]
    for owner, template in pod_templates(OBJECTS):
        assert any(selects(p["spec"]["podSelector"]["matchLabels"], template["metadata"]["labels"]) for p in policies), owner
    mysql_rule = find(OBJECTS, "NetworkPolicy", "mysql")["spec"]["ingress"][0]
    sources = mysql_rule["from"]
    assert any(selects(s.get("podSelector", {}).get("matchLabels", {"-": "-"}), POD["metadata"]["labels"]) for s in sources)
    # The Agent's namespace, where datadog-values.yaml is installed (docs/kubernetes.md).
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "datadog"}}} in sources
    assert mysql_rule["ports"][0]["port"] == "mysql"
    app_rule = find(OBJECTS, "NetworkPolicy", "apm-demo")["spec"]["ingress"][0]
    assert app_rule["ports"][0]["port"] == "http"
    assert app_rule["from"] == [{"podSelector": {}}]  # loadgen, from the same namespace


# ---- the service's own configuration ----


def test_every_variable_given_to_the_app_is_one_it_reads():
    unknown = set(env_of(APP)) - config_env_names()
    assert not unknown, f"src/config.rs reads no {sorted(unknown)}"


def test_grace_period_covers_the_drain_and_the_span_flush():
    drain = rust_duration_const("SHUTDOWN_GRACE")
    flush = rust_duration_const("FLUSH_TIMEOUT")
    assert (drain, flush) == (10, 5)  # docs/architecture.md's figures
    pre_stop = APP["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert POD["spec"]["terminationGracePeriodSeconds"] >= pre_stop + drain + flush
    # No request is cut within its deadline: the deadline given is not longer than the drain.
    timeout = re.fullmatch(r"(\d+)s", env_of(APP)["REQUEST_TIMEOUT"]["value"]).group(1)
    assert int(timeout) <= drain


AGENT_AND_TAGS = {"DD_AGENT_HOST", "DD_TRACE_AGENT_URL", "DD_TRACE_AGENT_PORT", "DD_ENV", "DD_SERVICE", "DD_VERSION"}


def test_no_agent_address_or_tags_are_hard_coded():
    # The app's: the Admission Controller injects these; one set here would win over its value.
    for owner, template in pod_templates(OBJECTS):
        for container in template["spec"]["containers"]:
            env = env_of(container)
            if template["metadata"]["labels"].get("admission.datadoghq.com/enabled") == "true":
                assert not set(env) & AGENT_AND_TAGS, owner
            # loadgen's: from the downward API (the node, the pod's labels), never a value written.
            for name in set(env) & AGENT_AND_TAGS:
                assert set(env[name]) == {"name", "valueFrom"}, (owner, name)


def loadgen_env_names():
    """Every environment variable loadgen reads (clap's `env = "NAME"` in loadgen/src/cli.rs)."""
    return set(re.findall(r'env = "([A-Z0-9_]+)"', (ROOT / "loadgen/src/cli.rs").read_text()))


def test_loadgen_sends_its_spans_to_the_nodes_agent_with_its_pods_tags():
    """The Job's (and so the CronJob's) loadgen reports a client span per request to the Agent on its
    node: DD_AGENT_HOST is the node's IP (status.hostIP, Datadog's way without the Admission
    Controller: DataDog/documentation, content/en/containers/kubernetes/apm.md, "TCP"), listed before
    LOADGEN_TRACE_AGENT, which names it as $(DD_AGENT_HOST) (Kubernetes expands only variables
    defined earlier in the list), on the chart's APM host port; DD_ENV, DD_SERVICE and DD_VERSION are
    the pod's tags.datadoghq.com labels (content/en/getting_started/tagging/unified_service_tagging.md)."""
    template = JOB["spec"]["template"]
    container = template["spec"]["containers"][0]
    names = [e["name"] for e in container["env"]]
    env = env_of(container)
    assert env["DD_AGENT_HOST"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    assert env["LOADGEN_TRACE_AGENT"]["value"] == "http://$(DD_AGENT_HOST):8126"
    assert names.index("DD_AGENT_HOST") < names.index("LOADGEN_TRACE_AGENT")
    # The chart's APM port: datadog.apm.portEnabled opens "hostPort 8126 by default", and the values
    # set no other (datadog.apm.port).
    chart = yaml.safe_load((ROOT / "deploy/kubernetes/tests/data/datadog-chart-keys.yaml").read_text())
    assert "(hostPort 8126 by default)" in chart["keys"]["datadog.apm.portEnabled"]["doc"]
    values = yaml.safe_load((ROOT / "deploy/kubernetes/datadog-values.yaml").read_text())
    assert values["datadog"]["apm"]["portEnabled"] is True and "port" not in values["datadog"]["apm"]
    labels = template["metadata"]["labels"]
    for tag in ("env", "service", "version"):
        path = env[f"DD_{tag.upper()}"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert path == f"metadata.labels['tags.datadoghq.com/{tag}']", tag
        assert labels[f"tags.datadoghq.com/{tag}"], tag
    assert (labels["tags.datadoghq.com/service"], labels["tags.datadoghq.com/version"]) == ("loadgen", cargo_version())
    assert labels["tags.datadoghq.com/env"] == POD["metadata"]["labels"]["tags.datadoghq.com/env"]
    # Not opted in to the Admission Controller (mutateUnlabelled is false): nothing else sets these.
    assert "admission.datadoghq.com/enabled" not in labels
    # Every other variable is loadgen's own; DD_AGENT_HOST serves only the expansion.
    assert set(env) - loadgen_env_names() == {"DD_AGENT_HOST"}


def test_loadgens_environment_is_a_configuration_loadgen_accepts():
    """The Job's environment as the kubelet would give it (the node's IP, the pod's labels, $(NAME)
    expanded), the app's address moved to a closed port, to the release loadgen for one request:
    exit 1 (the request refused) means every setting was accepted; a refused one exits 2, naming it."""
    import subprocess
    template = JOB["spec"]["template"]
    labels = template["metadata"]["labels"]
    env = {}
    for entry in template["spec"]["containers"][0]["env"]:
        if "value" in entry:
            value = re.sub(r"\$\(([A-Z_]+)\)", lambda m: env[m.group(1)], entry["value"])
        else:
            path = entry["valueFrom"]["fieldRef"]["fieldPath"]
            label = re.fullmatch(r"metadata\.labels\['([^']+)'\]", path)
            value = labels[label.group(1)] if label else {"status.hostIP": "127.0.0.1"}[path]
        env[entry["name"]] = value
    assert env["LOADGEN_TRACE_AGENT"] == "http://127.0.0.1:8126"
    env.update({"LOADGEN_URL": "http://127.0.0.1:9", "LOADGEN_REQUESTS": "1", "PATH": "/usr/bin:/bin"})
    bin_dir = subprocess.run([str(ROOT / "local" / "bin-dir.sh")], capture_output=True, text=True,
                             check=True).stdout.strip()
    result = subprocess.run([f"{bin_dir}/loadgen"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr


def test_unified_service_tagging_labels_and_the_admission_opt_in():
    version = cargo_version()
    expected = {
        "tags.datadoghq.com/env": "demo",  # compose's DD_ENV
        "tags.datadoghq.com/service": "apm-demo",
        "tags.datadoghq.com/version": version,
    }
    for labels in (DEPLOYMENT["metadata"]["labels"], POD["metadata"]["labels"]):
        assert {k: labels.get(k) for k in expected} == expected
    assert POD["metadata"]["labels"]["admission.datadoghq.com/enabled"] == "true"
    assert APP["image"] == f"apm-demo:{version}"  # docker-compose.yml's image name
    assert JOB["spec"]["template"]["spec"]["containers"][0]["image"] == f"apm-demo-loadgen:{version}"


def test_service_links_are_off_so_no_variable_shadows_the_services_own():
    # With links on, the mysql Service would put MYSQL_PORT=tcp://<ip>:3306 in every pod's environment.
    assert "MYSQL_PORT" in config_env_names()
    for owner, template in pod_templates(OBJECTS):
        assert template["spec"]["enableServiceLinks"] is False, owner


def test_flag_file_is_a_mounted_directory_of_the_flags_configmap():
    path = env_of(APP)["FLAGD_OFFLINE_FLAG_SOURCE_PATH"]["value"]
    directory, _, name = path.rpartition("/")
    (mount,) = [m for m in APP["volumeMounts"] if m["name"] == "flags"]
    assert mount["mountPath"] == directory and "subPath" not in mount and mount["readOnly"]
    (volume,) = [v for v in POD["spec"]["volumes"] if v["name"] == "flags"]
    configmap = find(OBJECTS, "ConfigMap", volume["configMap"]["name"])
    assert name in configmap["data"]


# ---- security ----


def image_uid(dockerfile):
    return int(re.search(r"useradd .*--uid (\d+)", (ROOT / dockerfile).read_text()).group(1))


@pytest.mark.parametrize("owner,template", pod_templates(OBJECTS), ids=[o for o, _ in pod_templates(OBJECTS)])
def test_every_container_runs_unprivileged_on_a_read_only_root(owner, template):
    spec = template["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["runAsUser"] == spec["securityContext"]["runAsUser"]


def test_the_app_and_loadgen_run_as_their_images_user():
    assert POD["spec"]["securityContext"]["runAsUser"] == image_uid("Dockerfile") == 10001
    job_pod = JOB["spec"]["template"]["spec"]
    assert job_pod["securityContext"]["runAsUser"] == image_uid("loadgen/Dockerfile")


# ---- resources ----


def mebibytes(quantity):
    match = re.fullmatch(r"(\d+)(Mi|Gi)", quantity)
    return int(match.group(1)) * (1024 if match.group(2) == "Gi" else 1)


def measured_peak_rss_mib():
    """The memory benchmark's peak RSS under saturating load, from bench/README.md."""
    text = (ROOT / "bench/README.md").read_text()
    match = re.search(r"60 s of saturating load .*\| peak ([\d.]+) MiB", text)
    assert match, "bench/README.md's memory table changed: update this test's reading of it"
    return float(match.group(1))


def test_memory_request_and_limit_rest_on_the_measured_peak():
    peak = measured_peak_rss_mib()
    request = mebibytes(APP["resources"]["requests"]["memory"])
    limit = mebibytes(APP["resources"]["limits"]["memory"])
    assert peak <= request < limit
    # Room for the cgroup's own accounting (page cache, kernel memory) above the process's RSS.
    assert limit >= 2 * peak


def memory_budget():
    """docs/benchmarks.md's table of what the app's container must hold: {term: figure}."""
    text = (ROOT / "docs/benchmarks.md").read_text()
    section = text.split("## Per connection", 1)[1]
    rows = dict(re.findall(r"^\| ([^|]+?) \| ([\d.,]+(?: MiB| KiB)?) \|$", section, re.M))
    assert {"a connection in a flood of full heads, with its socket", "`MAX_CONNECTIONS`",
            "evicted connections still closing, at most", "the service's own peak, span queue full",
            "the container's limit"} <= rows.keys(), rows
    return rows


def test_the_default_connection_limit_fits_the_app_container():
    """MAX_CONNECTIONS connections, each at its measured worst, beside the service's own measured
    peak, fit the container's memory limit, and the figures are those the manifest and the service
    have (a changed default, limit or benchmark figure fails here until the budget is redone)."""
    rows = memory_budget()
    figure = lambda row, unit: float(rows[row].removesuffix(unit).replace(",", ""))  # noqa: E731
    config = (ROOT / "src/config.rs").read_text()
    default = int(re.search(r'env = "MAX_CONNECTIONS"[^\n]*default_value_t = (\d+)', config).group(1))
    assert "MAX_CONNECTIONS" not in env_of(APP), "the budget is for the default"
    connections = figure("`MAX_CONNECTIONS`", "")
    assert connections == default
    server = (ROOT / "src/server.rs").read_text()
    closing = int(re.search(r"pub const EVICTED_CLOSING_AT_MOST: usize = (\d+);", server).group(1))
    assert figure("evicted connections still closing, at most", "") == closing
    limit = mebibytes(APP["resources"]["limits"]["memory"])
    assert figure("the container's limit", " MiB") == limit
    each = figure("a connection in a flood of full heads, with its socket", " KiB")
    own = figure("the service's own peak, span queue full", " MiB")
    total = own + (connections + closing) * each / 1024
    assert abs(figure("in all", " MiB") - total) < 0.1
    # Room left for what no figure shows (allocator fragmentation, page cache charged to the cgroup).
    assert total <= limit - 8
    assert own >= measured_peak_rss_mib()


def test_requests_are_within_limits():
    for owner, template in pod_templates(OBJECTS):
        for container in template["spec"]["containers"]:
            res = container["resources"]
            assert mebibytes(res["requests"]["memory"]) <= mebibytes(res["limits"]["memory"]), owner
            cpu = lambda q: int(q[:-1]) if q.endswith("m") else int(float(q) * 1000)  # noqa: E731
            assert cpu(res["requests"]["cpu"]) <= cpu(res["limits"]["cpu"]), owner


# ---- MySQL ----


def test_mysql_keeps_its_data_on_a_claim_and_reads_the_setup_files():
    mounts = {m["name"]: m for m in MYSQL_CONTAINER["volumeMounts"]}
    (claim,) = MYSQL["spec"]["volumeClaimTemplates"]
    assert mounts[claim["metadata"]["name"]]["mountPath"] == "/var/lib/mysql"
    volumes = {v["name"]: v for v in MYSQL_POD["spec"]["volumes"]}
    assert mounts["init"]["mountPath"] == "/docker-entrypoint-initdb.d"
    assert volumes["init"]["configMap"]["name"] == "mysql-init"
    # Sourced, not executed, by the entrypoint (no executable mode): they call its docker_process_sql.
    assert "defaultMode" not in volumes["init"]["configMap"]
    assert "docker_process_sql" in (ROOT / "agent-config/mysql/datadog-user.sh").read_text()
    # The contract's path for the DBM options: /etc/mysql/conf.d/datadog-dbm.cnf.
    assert mounts["conf"]["mountPath"] == "/etc/mysql/conf.d"
    assert volumes["conf"]["configMap"]["name"] == "mysql-conf"


def test_mysql_gets_every_password_its_setup_scripts_read():
    read = set()
    for script in (ROOT / "agent-config/mysql").glob("*.sh"):
        read |= set(re.findall(r"\$\{?(MYSQL_[A-Z_]*PASSWORD)", script.read_text()))
    assert "MYSQL_DATADOG_PASSWORD" in read
    env = env_of(MYSQL_CONTAINER)
    for name in read:
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "apm-demo-mysql", name


def test_mysql_root_is_local_with_its_password_from_the_secret_as_a_file():
    env = env_of(MYSQL_CONTAINER)
    # The image's entrypoint (docker-library/mysql, 8.4/docker-entrypoint.sh): MYSQL_ROOT_HOST defaults
    # to '%', which adds a second root with every privilege; MYSQL_RANDOM_ROOT_PASSWORD prints the
    # password to the log; file_env reads MYSQL_ROOT_PASSWORD from the file MYSQL_ROOT_PASSWORD_FILE
    # names, and refuses both set.
    assert env["MYSQL_ROOT_HOST"]["value"] == "localhost"
    assert not {"MYSQL_RANDOM_ROOT_PASSWORD", "MYSQL_ALLOW_EMPTY_PASSWORD", "MYSQL_ROOT_PASSWORD"} & set(env)
    directory, _, name = env["MYSQL_ROOT_PASSWORD_FILE"]["value"].rpartition("/")
    (mount,) = [m for m in MYSQL_CONTAINER["volumeMounts"] if m["mountPath"] == directory]
    assert mount["readOnly"] and "subPath" not in mount
    (volume,) = [v for v in MYSQL_POD["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "apm-demo-mysql"  # pragma: allowlist secret (a Secret's name)
    assert volume["secret"]["items"] == [{"key": "root-password", "path": name}]
    # Readable by the server's group only: the pod's fsGroup owns the files, mode 0440.
    assert volume["secret"]["defaultMode"] == 0o440
    context = MYSQL_POD["spec"]["securityContext"]
    assert context["fsGroup"] == context["runAsGroup"] == 999


def test_autodiscovery_annotations_name_existing_containers():
    for template in (POD, MYSQL_POD):
        names = {c["name"] for c in template["spec"]["containers"]}
        for key, value in template["metadata"]["annotations"].items():
            if key.startswith("ad.datadoghq.com/"):
                container = key.split("/", 1)[1].split(".", 1)[0]
                assert container in names, key
                json.loads(value)  # the Agent parses these as JSON


def test_the_app_logs_pipeline_matches_compose():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    compose_logs = json.loads(compose["services"]["app"]["labels"]["com.datadoghq.ad.logs"])
    assert json.loads(POD["metadata"]["annotations"]["ad.datadoghq.com/app.logs"]) == compose_logs


@pytest.mark.parametrize("exporter", ["opentelemetry-datadog", "datadog-opentelemetry"])
def test_the_apps_environment_is_a_configuration_the_service_accepts_with_each_exporter(exporter):
    """The app container's environment (secrets stand in as `x`), with TRACE_EXPORTER as the manifest
    sets it and switched to the other exporter, given to the release binary's own health check: exit 1
    (no service answers) means every setting was accepted; a refused one exits 2, naming it."""
    import subprocess
    env = {name: entry.get("value", "x") for name, entry in env_of(APP).items()}
    assert env["TRACE_EXPORTER"] == "opentelemetry-datadog", "the manifest runs the default exporter"
    env.update({"TRACE_EXPORTER": exporter, "HOST": "127.0.0.1", "PORT": "9", "PATH": "/usr/bin:/bin"})
    bin_dir = subprocess.run([str(ROOT / "local" / "bin-dir.sh")], capture_output=True, text=True,
                             check=True).stdout.strip()
    result = subprocess.run([f"{bin_dir}/apm-demo", "healthcheck"], env=env, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 1, result.stderr
    assert "invalid configuration" not in result.stderr
