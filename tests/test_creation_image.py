"""Dockerfile.create (the chart's avatar creation Jobs) checked without Docker: NGC's PyTorch
image of the serving image's release, the create extra installed and imported in one step
without replacing that image's PyTorch, the face tracking networks taken out at build time, the
serving pods' user, `lipsync-server` as the entrypoint the chart's arguments follow; and every
distribution the creation command imports is one that image has. Each rule is also shown
refusing a deliberately broken file."""

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from dockerfile_parse import DockerfileParser

from lipsync_server.cache import ENV_CACHE

ROOT = Path(__file__).resolve().parents[1]
FACTS = tomllib.loads((ROOT / "deploy" / "image-facts.toml").read_text())
DOCKERFILE = (ROOT / "Dockerfile.create").read_text()
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def image_problems(text: str) -> list[str]:
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    steps = [(i["instruction"], i["value"]) for i in parser.structure if i["instruction"] != "COMMENT"]
    runs = [value for kind, value in steps if kind == "RUN"]
    env = dict(parser.envs)
    release = FACTS["release"]
    found = []
    if parser.baseimage != f"nvcr.io/nvidia/pytorch:{release['triton']}-py3":
        found.append(f"builds on {parser.baseimage}, not NGC's PyTorch of the serving release {release['triton']}")
    installs = [r for r in runs if "pip install" in r and '".[create]"' in r and "./protocol" in r]
    if not installs or "import torch, lipsync_server.creation" not in installs[0]:
        found.append("the create extra is not installed with an import check in the same step")
    if not env.get(ENV_CACHE) or not any(
        "lipsync-server face-models" in r and f"chown -R {release['uid']}:{release['uid']} {env[ENV_CACHE]}" in r
        for r in runs
    ):
        found.append(f"the face models are not fetched at build into ${ENV_CACHE}, owned by the Job's user")
    users = [value for kind, value in steps if kind == "USER"]
    if not users or users[-1].split(":")[0] != str(release["uid"]):
        found.append(f"runs as {users[-1] if users else 'root'}, not the serving pods' user {release['uid']}")
    entrypoint = [value for kind, value in steps if kind == "ENTRYPOINT"]
    if not entrypoint or json.loads(entrypoint[-1]) != ["lipsync-server"]:
        found.append("the entrypoint is not `lipsync-server` (the chart's Job passes `avatar create ...`)")
    return found


def test_the_creation_image_follows_the_rules():
    assert image_problems(DOCKERFILE) == []


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("FROM nvcr.io/nvidia/pytorch:${TRITON_RELEASE}-py3", "FROM python:3.12", "not NGC's PyTorch"),
        ("ARG TRITON_RELEASE=26.06", "ARG TRITON_RELEASE=26.05", "not NGC's PyTorch of the serving release"),
        ('".[create]"', '".[build]"', "the create extra is not installed"),
        (" \\\n && lipsync-server face-models", "", "the face models are not fetched"),
        ("USER 1000:1000", "USER root", "runs as root"),
        ('["lipsync-server"]', '["lipsync-server", "avatar", "create"]', "the entrypoint"),
    ],
    ids=["other image", "other release", "other extra", "no face models", "root user", "other entrypoint"],
)
def test_a_broken_creation_image_is_refused(old, new, expected):
    assert old in DOCKERFILE
    problems = image_problems(DOCKERFILE.replace(old, new))
    assert any(expected in problem for problem in problems), problems


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_create_extra_keeps_the_images_pytorch():
    from packaging.requirements import Requirement

    assert "torch" not in {normalized(Requirement(r).name) for r in EXTRAS["create"]}


def test_every_distribution_the_creation_command_imports_is_in_the_image():
    """What importing the command and its stages loads, against what Dockerfile.create installs
    (the protocol, the server with the create extra, their dependencies) and the image's PyTorch."""
    probe = (
        "import sys, json, importlib.metadata as md\n"
        "import torch\n"  # the image's, with what it loads
        "started = set(sys.modules)\n"  # the interpreter's own (site hooks) and PyTorch's
        "import lipsync_server.cli, lipsync_server.creation.create, lipsync_server.creation.quality_gates\n"
        "import lipsync_server.audio.mel_pipeline\n"
        "names = md.packages_distributions()\n"
        "print(json.dumps(sorted({d for m in set(sys.modules) - started for d in names.get(m.split('.')[0], [])})))\n"
    )
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    )
    installed = installed_closure(["triton-lipsync-protocol", "triton-lipsync-server"], {"create"})
    assert {normalized(name) for name in loaded} - installed - {"torch"} == set()


def installed_closure(roots: list[str], server_extras: set[str]) -> set[str]:
    """The distributions pip installs for these roots: their requirements, recursively, with
    this environment's markers (the server's with these extras)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen: set[str] = set()
    queue = [(root, server_extras if root == "triton-lipsync-server" else set()) for root in roots]
    while queue:
        name, extras = queue.pop()
        key = (normalized(name), frozenset(extras))
        if key in seen:
            continue
        seen.add(key)
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            wanted = requirement.marker is None or any(
                requirement.marker.evaluate({"extra": extra}) for extra in (extras or {""})
            )
            if wanted:
                queue.append((requirement.name, set(requirement.extras)))
    return {name for name, _ in seen}
