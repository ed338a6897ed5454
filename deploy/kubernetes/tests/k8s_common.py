"""What the Kubernetes tests share: the manifests as data, and the files they are checked against.

Not a conftest.py: agent-config/tests has one too, its tests `from conftest import ...`, and in one
pytest run both directories would compete for the module name `conftest`."""

import importlib.util
import re
from pathlib import Path

import yaml

KUBE = Path(__file__).resolve().parents[1]
ROOT = KUBE.parents[1]
MANIFEST_DIRS = [KUBE / "manifests", KUBE / "load"]
MANIFEST_FILES = sorted(p for d in MANIFEST_DIRS for p in d.glob("*.yaml"))
DOCS = ROOT / "docs" / "kubernetes.md"
VALUES = KUBE / "datadog-values.yaml"



def load_generator():
    """deploy/kubernetes/generate.py as the module `k8s_generate` (a name no other test directory uses)."""
    spec = importlib.util.spec_from_file_location("k8s_generate", KUBE / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_objects():
    """Every object of every manifest, each with the file it came from (`_file`, not sent anywhere)."""
    objects = []
    for path in MANIFEST_FILES:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                objects.append((path, doc))
    return objects


def find(objects, kind, name):
    hits = [o for _, o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected one {kind} {name}, found {len(hits)}"
    return hits[0]


def pod_templates(objects):
    """(owner description, pod template) of every workload."""
    out = []
    for _, o in objects:
        kind = o["kind"]
        if kind in ("Deployment", "StatefulSet", "Job"):
            out.append((f"{kind}/{o['metadata']['name']}", o["spec"]["template"]))
        elif kind == "CronJob":
            out.append((f"{kind}/{o['metadata']['name']}", o["spec"]["jobTemplate"]["spec"]["template"]))
    return out


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def rust_duration_const(name):
    """A `pub const NAME: Duration = Duration::from_secs(N);` of src/config.rs, in seconds."""
    text = (ROOT / "src/config.rs").read_text()
    match = re.search(rf"pub const {name}: Duration = Duration::from_secs\((\d+)\);", text)
    assert match, f"src/config.rs no longer defines {name} as Duration::from_secs(N)"
    return int(match.group(1))
