"""deploy/k8s: the manifests are valid, complete, and agree with the code (services, groups, topics, partitions)."""

import re
import tomllib
from collections.abc import Iterator
from typing import Any

import yaml

from schemas.topics import ALL_TOPICS
from sellmesh.mesh import SERVICE_NAMES
from sellmesh.topology import layout_of
from tests.unit.deploy.conftest import DEPLOY, K8S, ROOT

ALLOWED_KINDS = {
    "Namespace",
    "ConfigMap",
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "Job",
    "ScaledObject",
}
HTTP_SERVICES = {"ingest", "payments", "gateway"}


def of_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def pod_specs(manifests: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for m in manifests:
        if m["kind"] in {"Deployment", "Job"}:
            yield m["metadata"]["name"], m["spec"]["template"]["spec"]


def documented_secrets() -> dict[str, set[str]]:
    """The Secrets table of deploy/README.md: | `name` | `KEY`, `KEY` | ... |"""
    found: dict[str, set[str]] = {}
    for line in (DEPLOY / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"`sellmesh-[a-z-]+`", cells[0]):
            found[cells[0].strip("`")] = set(re.findall(r"`([A-Z_*]+)`", cells[1]))
    return found


def test_every_file_is_in_the_kustomization_and_every_document_is_an_allowed_kind(
    manifests: list[dict[str, Any]],
) -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"}
    for m in manifests:
        assert {"apiVersion", "kind", "metadata"} <= set(m), m
        assert m["kind"] in ALLOWED_KINDS, m["kind"]
        assert m["metadata"]["name"]


def test_every_service_has_a_deployment_a_budget_and_a_scaled_object(manifests: list[dict[str, Any]]) -> None:
    for kind in ("Deployment", "PodDisruptionBudget", "ScaledObject"):
        assert set(of_kind(manifests, kind)) == set(SERVICE_NAMES), kind


def test_every_deployment_runs_its_service_with_probes_resources_and_no_root(manifests: list[dict[str, Any]]) -> None:
    for name, deployment in of_kind(manifests, "Deployment").items():
        spec = deployment["spec"]
        assert "replicas" not in spec, f"{name}: the ScaledObject owns the replica count"
        pod = spec["template"]["spec"]
        assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        (container,) = pod["containers"]
        assert container["command"] == ["sellmesh", "run", name]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{name} {bound}"
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
        # The drain after SIGTERM (preStop, consumers, outbox) must fit before the kubelet kills the pod.
        assert pod["terminationGracePeriodSeconds"] >= 30, name


def test_budgets_and_services_select_the_pods_of_their_deployment(manifests: list[dict[str, Any]]) -> None:
    deployments = of_kind(manifests, "Deployment")
    for name, budget in of_kind(manifests, "PodDisruptionBudget").items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
    services = of_kind(manifests, "Service")
    assert set(services) == HTTP_SERVICES
    for name, service in services.items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items(), name
        ports = {p["name"] for p in deployments[name]["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports, name


def test_scaled_objects_follow_each_consumer_group_and_stop_at_the_partition_count(
    manifests: list[dict[str, Any]], wiring: dict[str, set[tuple[str, str]]]
) -> None:
    config = of_kind(manifests, "ConfigMap")["sellmesh-config"]["data"]
    # The partition counts below hold only if no worker creates a topic on its own first.
    assert config["KAFKA_CREATE_TOPICS"] == "false"
    for name, scaled in of_kind(manifests, "ScaledObject").items():
        spec = scaled["spec"]
        assert spec["scaleTargetRef"]["name"] == name
        triggers = spec["triggers"]
        assert {t["type"] for t in triggers} == {"kafka"}
        groups = {(t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for t in triggers}
        assert groups == wiring[name], name
        assert {t["metadata"]["bootstrapServers"] for t in triggers} == {config["KAFKA_BOOTSTRAP_SERVERS"]}
        assert spec["maxReplicaCount"] == max(layout_of(topic).partitions for _, topic in wiring[name]), name
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], name


def test_topic_names_in_manifests_are_the_ones_in_schemas(manifests: list[dict[str, Any]]) -> None:
    text = "\n".join(p.read_text() for p in K8S.glob("*.yaml"))
    named = set(re.findall(r"\b[a-z]+\.[a-z]+\.v\d+(?:\.dlq)?\b", text))
    assert named and named <= set(ALL_TOPICS), named - set(ALL_TOPICS)


def test_secrets_are_referenced_never_embedded_and_each_is_documented(manifests: list[dict[str, Any]]) -> None:
    assert not [m for m in manifests if m["kind"] == "Secret"]
    documented = documented_secrets()
    assert documented, "deploy/README.md has no Secrets table"
    for name, pod in pod_specs(manifests):
        for container in pod["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in documented.get(ref["name"], set()), f"{name}: {ref}"
                assert "value" not in env or "SECRET" not in env["name"], f"{name}: {env['name']} inline"
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in documented, f"{name}: {source}"
    config = of_kind(manifests, "ConfigMap")["sellmesh-config"]["data"]
    assert not [k for k in config if "SECRET" in k or k.endswith(("_KEY", "_PASSWORD", "DATABASE_URL"))]


def test_the_migration_and_topic_jobs_run_the_project_commands(manifests: list[dict[str, Any]]) -> None:
    jobs = of_kind(manifests, "Job")
    commands = {tuple(job["spec"]["template"]["spec"]["containers"][0]["command"][:2]) for job in jobs.values()}
    assert commands == {("sellmesh", "migrate"), ("sellmesh", "topics")}
    for name, pod in pod_specs(manifests):
        assert pod["securityContext"]["runAsNonRoot"] is True, name


def test_compose_and_kubernetes_run_the_same_image_at_the_project_version(manifests: list[dict[str, Any]]) -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    compose_images = {s["image"] for s in compose["services"].values() if "build" in s}
    k8s_images = {c["image"] for _, pod in pod_specs(manifests) for c in pod["containers"]}
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert compose_images == k8s_images == {f"sellmesh/sellmesh:{version}"}
    (override,) = yaml.safe_load((K8S / "kustomization.yaml").read_text())["images"]
    assert override == {"name": "sellmesh/sellmesh", "newTag": version}
