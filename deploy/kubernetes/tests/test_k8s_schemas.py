"""Every manifest against the Kubernetes API's own schemas (kubernetes-validate bundles them).

Strict mode: an unknown field (a typo, a field of a newer API) fails, as `kubectl apply --validate=strict`
would refuse it. Two versions: 1.30, the oldest these manifests need (the kubelet's preStop `sleep`
action is on by default from 1.30), and 1.37, the newest the package bundles.
"""

import copy

import kubernetes_validate
import pytest

from k8s_common import MANIFEST_FILES, find, load_objects

VERSIONS = ["1.30.0", "1.37.0"]
OBJECTS = load_objects()


def test_the_newest_bundled_schemas_are_the_ones_checked():
    assert kubernetes_validate.latest_version() == VERSIONS[-1]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "path,obj",
    OBJECTS,
    ids=[f"{p.parent.name}/{p.name}:{o['kind']}/{o['metadata']['name']}" for p, o in OBJECTS],
)
def test_object_is_valid_for_the_api(path, obj, version):
    kubernetes_validate.validate(obj, version, strict=True)


def test_strict_validation_refuses_a_misspelt_field():
    # The check above would pass vacuously if strict mode let unknown fields through.
    deployment = copy.deepcopy(find(OBJECTS, "Deployment", "apm-demo"))
    spec = deployment["spec"]["template"]["spec"]
    spec["terminationGracePeriod"] = spec.pop("terminationGracePeriodSeconds")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


def test_the_delivery_has_the_objects_the_issue_asks_for():
    kinds = sorted((o["kind"], o["metadata"]["name"]) for _, o in OBJECTS)
    assert kinds == sorted(
        [
            ("Namespace", "apm-demo"),
            ("Deployment", "apm-demo"),
            ("Service", "apm-demo"),
            ("HorizontalPodAutoscaler", "apm-demo"),
            ("PodDisruptionBudget", "apm-demo"),
            ("ConfigMap", "apm-demo-flags"),
            ("ConfigMap", "mysql-init"),
            ("ConfigMap", "mysql-conf"),
            ("StatefulSet", "mysql"),
            ("Service", "mysql"),
            ("NetworkPolicy", "apm-demo"),
            ("NetworkPolicy", "mysql"),
            ("NetworkPolicy", "loadgen"),
            ("Job", "loadgen"),
            ("CronJob", "loadgen"),
        ]
    )
    assert len(MANIFEST_FILES) == 8


def test_every_namespaced_object_names_the_demo_namespace():
    # So that `kubectl apply -f` puts them there whatever the current context's namespace is.
    for _, obj in OBJECTS:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "apm-demo", obj["metadata"]["name"]
