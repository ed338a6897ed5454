"""The manifests under checkov's Kubernetes policies (Bridgecrew/Prisma's maintained checker).

Every finding is fixed or suppressed in place, on the object, with its reason
(`checkov.io/skipN: CHECK_ID=reason`); this test fails on any failed check and on a suppression
without a reason. checkov runs from a virtualenv of its own (checkov-venv.sh says why), created on
first use, and with --skip-download: it contacts no service.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from k8s_common import KUBE, MANIFEST_FILES, find, load_objects

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def checkov():
    # Made from the interpreter running the tests (the project's Python 3.11).
    env = dict(os.environ, PYTHON=sys.executable)
    made = subprocess.run(["sh", str(HERE / "checkov-venv.sh")], capture_output=True, text=True, timeout=900, env=env)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def scan(checkov, files):
    args = [checkov, "--framework", "kubernetes", "--skip-download", "-o", "json"]
    for path in files:
        args += ["-f", str(path)]
    run = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=KUBE)
    # Exit code 1 means "failed checks"; anything else than JSON on stdout is a crash.
    report = json.loads(run.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [c for r in reports for c in r["results"]["failed_checks"]]
    passed = [c for r in reports for c in r["results"]["passed_checks"]]
    skipped = [c for r in reports for c in r["results"]["skipped_checks"]]
    return failed, passed, skipped


def describe(checks):
    return "\n".join(f"{c['check_id']} {c['check_name']}: {c['file_path']} {c['resource']}" for c in checks)


def suppressions(obj):
    """{check id: reason} of an object's checkov.io/skipN annotations."""
    out = {}
    for key, value in (obj["metadata"].get("annotations") or {}).items():
        if key.startswith("checkov.io/skip"):
            check, _, reason = value.partition("=")
            out[check] = reason
    return out


def resource_id(obj):
    return f"{obj['kind']}.{obj['metadata']['namespace']}.{obj['metadata']['name']}"


def test_no_policy_fails_and_every_suppression_says_why(checkov):
    failed, passed, skipped = scan(checkov, MANIFEST_FILES)
    assert not failed, "checkov findings:\n" + describe(failed)
    # It did check every workload (a file it cannot parse would be left out silently).
    checked = {c["file_path"].split("/")[-1] for c in passed}
    workloads = {p.name for p, o in load_objects() if o["kind"] in ("Deployment", "StatefulSet", "Job", "CronJob")}
    assert workloads <= checked, workloads - checked
    # What checkov skipped is exactly what the annotations ask, and each says why (checkov's JSON
    # does not carry the reason of an annotation, so it is read from the manifest).
    annotated = {(resource_id(o), check): reason for _, o in load_objects() for check, reason in suppressions(o).items()}
    assert {(c["resource"], c["check_id"]) for c in skipped} == set(annotated)
    for (resource, check), reason in annotated.items():
        assert len(reason.split()) >= 6, f"{check} on {resource} is suppressed without a reason"


def test_every_suppression_suppresses_a_real_finding(checkov, tmp_path):
    # The same manifests without their checkov.io annotations fail exactly the suppressed checks:
    # no suppression is stale, none hides more than it says.
    copies = []
    for path in MANIFEST_FILES:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        for doc in docs:
            annotations = doc["metadata"].get("annotations") or {}
            for key in [k for k in annotations if k.startswith("checkov.io/")]:
                del annotations[key]
        copy = tmp_path / path.name
        copy.write_text(yaml.safe_dump_all(docs))
        copies.append(copy)
    failed, _, skipped = scan(checkov, copies)
    assert not skipped
    annotated = {(resource_id(o), check) for _, o in load_objects() for check in suppressions(o)}
    assert {(c["resource"], c["check_id"]) for c in failed} == annotated


def test_checkov_catches_a_writable_root_filesystem(checkov, tmp_path):
    # The scan above would pass vacuously if checkov read no container: break one, see it fail.
    deployment = find(load_objects(), "Deployment", "apm-demo")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    broken = tmp_path / "deployment.yaml"
    broken.write_text(yaml.safe_dump(deployment))
    failed, _, _ = scan(checkov, [broken])
    assert "CKV_K8S_22" in {c["check_id"] for c in failed}, describe(failed)
