"""deploy/compose.yaml: it parses, names only files that exist, and runs every service the way production does."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from sellmesh.mesh import SERVICE_NAMES
from tests.unit.deploy.conftest import DEPLOY, ROOT

COMPOSE = DEPLOY / "compose.yaml"
INFRA = ("kafka", "postgres", "redis", "prometheus", "grafana")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def bind_sources(service: dict[str, Any]) -> list[str]:
    """Host paths of bind mounts (short syntax `./x:/y[:ro]`); named volumes have no slash."""
    return [str(v).split(":")[0] for v in service.get("volumes", []) if str(v).startswith((".", "/"))]


def test_every_build_context_dockerfile_and_mounted_file_exists(compose: dict[str, Any]) -> None:
    missing = []
    for name, service in services(compose).items():
        if "build" in service:
            context = (COMPOSE.parent / service["build"]["context"]).resolve()
            if not (context / service["build"].get("dockerfile", "Dockerfile")).is_file():
                missing.append(f"{name}: build {context}")
        missing.extend(f"{name}: {src}" for src in bind_sources(service) if not (COMPOSE.parent / src).exists())
        for env_file in service.get("env_file", []):
            path = COMPOSE.parent / (env_file["path"] if isinstance(env_file, dict) else env_file)
            required = env_file.get("required", True) if isinstance(env_file, dict) else True
            # An optional env file is the operator's copy of a committed example.
            expected = path if required else path.with_name(path.name + ".example")
            if not expected.is_file():
                missing.append(f"{name}: env file {expected}")
    assert missing == []


def test_every_sellmesh_service_runs_in_its_own_container(compose: dict[str, Any]) -> None:
    commands: dict[str, Any] = {name: service.get("command") for name, service in services(compose).items()}
    for name in SERVICE_NAMES:
        assert commands.get(name) == ["sellmesh", "run", name], name
    assert commands["migrate"] == ["sellmesh", "migrate"]
    assert commands["topics"][:2] == ["sellmesh", "topics"]


def test_agent_and_ingest_run_several_replicas(compose: dict[str, Any]) -> None:
    for name in ("agent", "ingest"):
        assert services(compose)[name]["deploy"]["replicas"] >= 2


def test_workers_start_after_migration_and_topic_creation(compose: dict[str, Any]) -> None:
    for name in SERVICE_NAMES:
        depends = services(compose)[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["topics"]["condition"] == "service_completed_successfully"


def test_every_long_running_container_has_a_health_check(compose: dict[str, Any]) -> None:
    for name in (*SERVICE_NAMES, "kafka", "postgres", "redis"):
        check = services(compose)[name].get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), name
    for name in SERVICE_NAMES:
        assert "/readyz" in " ".join(services(compose)[name]["healthcheck"]["test"]), name


def test_kafka_runs_kraft_and_only_the_topic_job_creates_topics(compose: dict[str, Any]) -> None:
    env = services(compose)["kafka"]["environment"]
    assert "controller" in env["KAFKA_PROCESS_ROLES"]
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    for name in SERVICE_NAMES:
        assert services(compose)[name]["environment"]["KAFKA_CREATE_TOPICS"] == "false", name


def test_what_must_survive_a_restart_is_on_named_volumes(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    for name in INFRA:
        named = {
            str(v).split(":")[0] for v in services(compose)[name].get("volumes", []) if "/" not in str(v).split(":")[0]
        }
        assert named and named <= declared, name


def test_prometheus_gets_its_config_and_every_rule_file(compose: dict[str, Any]) -> None:
    mounts = dict(str(v).split(":")[:2] for v in services(compose)["prometheus"]["volumes"] if str(v).startswith("."))
    config_source = COMPOSE.parent / next(src for src, dst in mounts.items() if dst.endswith("prometheus.yml"))
    config = yaml.safe_load(config_source.read_text())
    for pattern in config["rule_files"]:
        # Rule globs are relative to the config file, both on the host and in the container.
        host_files = list(config_source.parent.glob(pattern))
        assert host_files, pattern
        assert any(dst.startswith("/etc/prometheus") for dst in mounts.values())
        for path in host_files:
            assert any(path.is_relative_to(COMPOSE.parent / src) for src in mounts), path


def test_grafana_gets_provisioning_and_dashboards(compose: dict[str, Any]) -> None:
    sources = {Path(src).as_posix().lstrip("./") for src in bind_sources(services(compose)["grafana"])}
    assert {"grafana/provisioning", "grafana/dashboards"} <= sources
    assert list((DEPLOY / "grafana" / "dashboards").glob("*.json"))
    assert list((DEPLOY / "grafana" / "provisioning").rglob("*.y*ml"))


def test_grafana_finds_the_dashboards_where_its_provisioning_looks(compose: dict[str, Any]) -> None:
    mounts = dict(str(v).split(":")[:2] for v in services(compose)["grafana"]["volumes"] if str(v).startswith("."))
    provisioning = DEPLOY / "grafana" / "provisioning" / "dashboards"
    paths = {
        provider["options"]["path"]
        for path in provisioning.glob("*.y*ml")
        for provider in yaml.safe_load(path.read_text())["providers"]
    }
    assert paths == {mounts["./grafana/dashboards"]}
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"


def test_the_env_example_names_only_settings_or_compose_variables(compose: dict[str, Any]) -> None:
    from sellmesh.settings import MeshSettings

    known = {name.upper() for name in MeshSettings.model_fields} | {"POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"}
    text = COMPOSE.read_text()
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        name = line.lstrip("# ").split("=")[0]
        if "=" not in line or " " in name:
            continue
        # Provider keys are read by litellm, not by the settings class.
        assert name in known or name.endswith("_API_KEY"), name
        if name in {"POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"}:
            assert f"${{{name}" in text, name


def test_the_image_is_built_from_the_repository_root(compose: dict[str, Any]) -> None:
    build = services(compose)["ingest"]["build"]
    assert (COMPOSE.parent / build["context"]).resolve() == ROOT
