"""The Dockerfile: a pinned base, a non-root user, dependencies only from requirements.lock by hash."""

import re

from tests.unit.deploy.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
LINES = [line.strip() for line in DOCKERFILE.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def instructions(name: str) -> list[str]:
    return [line[len(name) + 1 :] for line in LINES if line.upper().startswith(f"{name} ")]


def test_the_base_is_python_3_11_slim_pinned_by_digest_and_both_stages_use_it() -> None:
    (arg,) = [a for a in instructions("ARG") if a.startswith("PYTHON_BASE=")]
    assert re.fullmatch(r"PYTHON_BASE=python:3\.11(\.\d+)?-slim(-\w+)?@sha256:[0-9a-f]{64}", arg), arg
    stages = instructions("FROM")
    assert len(stages) >= 2, "multi-stage: build tools stay out of the runtime image"
    assert all(stage.startswith("${PYTHON_BASE}") for stage in stages), stages
    assert "docker buildx imagetools inspect" in DOCKERFILE, "say how to update the digest"


def test_the_runtime_stage_runs_as_a_numeric_non_root_user() -> None:
    last_stage = DOCKERFILE.rsplit("\nFROM ", 1)[1]
    users = [line.split()[1] for line in last_stage.splitlines() if line.startswith("USER ")]
    assert users, "no USER in the runtime stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, users


def test_dependencies_come_only_from_the_lock_with_hashes() -> None:
    installs = [run for run in instructions("RUN") if "pip install" in run]
    locked = [run for run in installs if "-r requirements.lock" in run]
    assert locked and all("--require-hashes" in run and "--no-deps" in run for run in locked)
    # The project itself adds no dependency of its own: everything else came from the lock.
    assert all("-r requirements.lock" in run or "--no-deps" in run for run in installs), installs


def test_everything_copied_exists_and_the_context_leaves_out_local_state() -> None:
    for copy in instructions("COPY"):
        if copy.startswith("--from"):
            continue
        *sources, _ = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), source
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "var", "tests"} <= ignored
