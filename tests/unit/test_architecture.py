"""The shape DESIGN.md promises: services meet only through schemas and read-only query modules."""

import ast
from pathlib import Path

from schemas.registry import TOPIC_SCHEMAS
from schemas.topics import ALL_TOPICS
from tests.source_tree import parse_module

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "app.py").exists())
# Composition roots may name services; the rest of the runtime stays service-agnostic. `reingest.py` composes the
# on-call tools with the edges' routing, so a webhook an edge kept goes back exactly as that edge would send it.
RUNTIME_COMPOSITION = {"mesh.py", "tables.py", "demo.py", "contract.py", "cli.py", "chat.py", "reingest.py"}


def imported_modules(path: Path) -> set[str]:
    tree = parse_module(path)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_services_import_other_services_only_through_their_query_module() -> None:
    offences = []
    for service in SERVICES:
        for path in (ROOT / "services" / service).rglob("*.py"):
            for name in imported_modules(path):
                parts = name.split(".")
                if parts[0] == "services" and len(parts) > 1 and parts[1] != service and parts[2:] != ["query"]:
                    offences.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offences == []


def test_runtime_does_not_depend_on_services_outside_composition_roots() -> None:
    offences = [
        f"{path.name} imports {name}"
        for path in (ROOT / "sellmesh").rglob("*.py")
        if path.name not in RUNTIME_COMPOSITION
        for name in imported_modules(path)
        if name.startswith("services")
    ]
    assert offences == []


def test_every_service_has_the_same_shape() -> None:
    for service in SERVICES:
        assert (ROOT / "services" / service / "app.py").exists()
    assert set(SERVICES) == {"ingest", "agent", "orders", "payments", "handoff", "gateway"}


def test_every_topic_constant_has_exactly_one_schema() -> None:
    assert set(TOPIC_SCHEMAS) == set(ALL_TOPICS)
    assert len(ALL_TOPICS) == len(set(ALL_TOPICS))


def test_no_topic_name_is_typed_inline_outside_schemas() -> None:
    offences = []
    for folder in ("services", "sellmesh"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            offences.extend(f"{path.relative_to(ROOT)}: {topic}" for topic in ALL_TOPICS if f'"{topic}' in text)
    assert offences == []
