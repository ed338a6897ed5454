"""docs/kubernetes.md's commands are complete: they parse, name files that exist, create every Secret
the manifests and the Helm values reference (from the environment, never a literal), and install the
chart version the values were checked against."""

import re
import shlex
import subprocess

import yaml

from k8s_common import DOCS, KUBE, MANIFEST_FILES, ROOT, VALUES, load_objects, pod_templates

TEXT = DOCS.read_text()
BLOCKS = re.findall(r"```sh\n(.*?)```", TEXT, re.S)
CHART = yaml.safe_load((KUBE / "tests/data/datadog-chart-keys.yaml").read_text())


def commands():
    """Each command of the page's shell blocks, continuation lines joined, comments dropped."""
    out = []
    for block in BLOCKS:
        joined = re.sub(r"\\\n\s*", " ", block)
        out += [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]
    return out


def created_secrets():
    """{(namespace, name): {key: the environment variable it is read from}} of the page's commands."""
    secrets = {}
    for command in commands():
        if not command.startswith("kubectl create secret generic "):
            continue
        name = command.split()[4]
        namespace = re.search(r"--namespace (\S+)", command).group(1)
        keys = dict(re.findall(r'--from-file=([\w-]+)=<\(printf %s "\$(\w+)"\)', command))
        assert keys and "--from-literal" not in command, command
        secrets[(namespace, name)] = keys
    return secrets


def test_shell_blocks_parse():
    assert BLOCKS
    for block in BLOCKS:
        run = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr


def test_every_secret_referenced_is_created_from_the_environment():
    secrets = created_secrets()
    needed = set()
    for _, template in pod_templates(load_objects()):
        for container in template["spec"]["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    needed.add(("apm-demo", ref["name"], ref["key"]))
        for volume in template["spec"].get("volumes", []):
            if "secret" in volume:
                for item in volume["secret"]["items"]:
                    needed.add(("apm-demo", volume["secret"]["secretName"], item["key"]))
    values = yaml.safe_load(VALUES.read_text())["datadog"]
    needed.add(("datadog", values["apiKeyExistingSecret"], "api-key"))  # the chart's key name
    for env in values["env"]:
        ref = env["valueFrom"]["secretKeyRef"]
        needed.add(("datadog", ref["name"], ref["key"]))
    for namespace, name, key in needed:
        assert key in secrets.get((namespace, name), {}), f"no command creates {namespace}/{name} key {key}"
    # The environment variables are .env.example's, the file the page sources.
    example = (ROOT / ".env.example").read_text()
    for keys in secrets.values():
        for variable in keys.values():
            assert re.search(rf"^{variable}=", example, re.M), variable


def test_no_manifest_holds_a_secret():
    for _, obj in load_objects():
        assert obj["kind"] != "Secret"


def test_helm_installs_the_checked_chart_version_with_the_values_file():
    (install,) = [c for c in commands() if c.startswith("helm install ")]
    args = shlex.split(install.replace("$DD_SITE", "site"))
    assert args[2:4] == ["datadog", "datadog/datadog"]
    assert args[args.index("--version") + 1] == CHART["version"]
    assert (ROOT / args[args.index("-f") + 1]) == VALUES
    # The Agent's namespace is the one the MySQL network policy admits.
    assert args[args.index("--namespace") + 1] == "datadog"
    assert "helm repo add datadog https://helm.datadoghq.com" in commands()


def test_kubectl_apply_covers_every_manifest_and_names_existing_paths():
    applied = set()
    for command in commands():
        if command.startswith("kubectl apply -f "):
            path = ROOT / command.split()[3]
            assert path.exists(), command
            applied |= set(path.glob("*.yaml")) if path.is_dir() else {path}
    # The CronJob is the optional extra, named in the page's text rather than the run's commands.
    cronjob = KUBE / "load/loadgen-cronjob.yaml"
    assert f"kubectl apply -f {cronjob.relative_to(ROOT)}" in TEXT
    assert applied | {cronjob} == set(MANIFEST_FILES)


def test_the_agent_is_up_before_the_app_pods_are_created():
    # The Admission Controller only mutates pods created after it runs.
    sequence = commands()
    cluster_agent = sequence.index("kubectl --namespace datadog rollout status deployment/datadog-cluster-agent --timeout=5m")
    assert cluster_agent < sequence.index("kubectl apply -f deploy/kubernetes/manifests/")
    helm_install = next(i for i, c in enumerate(sequence) if c.startswith("helm install "))
    assert helm_install < cluster_agent


def test_the_page_lists_what_was_not_verified():
    assert "## What was not verified without a cluster" in TEXT
