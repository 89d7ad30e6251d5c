"""The image checked without Docker or a GPU: Dockerfile.triton, the container's start and the
TensorRT plans it builds, against what deploy/image-facts.toml records from the sources of the
release the image pins. Each rule is also shown refusing a deliberately broken input.

Where trtexec has to run (plans on demand), a stand-in takes its place: it prints the banner
trtexec prints and refuses options the recorded release's trtexec does not know, as trtexec does.
"""

import io
import json
import os
import re
import shutil
import stat
from pathlib import Path

import onnx
import pytest
import tomllib
from dockerfile_parse import DockerfileParser
from onnx import TensorProto, helper

from lipsync_server.avatars import tensorrt_plans
from lipsync_server.launcher import container
from lipsync_server.launcher.profiles import CPU, GPU
from lipsync_server.launcher.startup import startup_models
from lipsync_server.model_configs import set_parameters

ROOT = Path(__file__).resolve().parents[1]
FACTS = tomllib.loads((ROOT / "deploy" / "image-facts.toml").read_text())
DOCKERFILE = (ROOT / "Dockerfile.triton").read_text()


def image_problems(text: str) -> list[str]:
    """Every way the Dockerfile departs from the release's facts (empty: none)."""
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    steps = [(i["instruction"], i["value"]) for i in parser.structure if i["instruction"] != "COMMENT"]
    runs = [value for kind, value in steps if kind == "RUN"]
    copies = [value for kind, value in steps if kind == "COPY"]
    env = dict(parser.envs)
    release, trtexec = FACTS["release"], FACTS["trtexec"]
    found = []
    if parser.baseimage != f"nvcr.io/nvidia/tritonserver:{release['triton']}-py3":
        found.append(f"serves from {parser.baseimage}, not the recorded release {release['triton']}")
    stages = {value.split()[-1]: value.split()[0] for kind, value in steps if kind == "FROM" and " AS " in value}
    stage = next((name for name, image in stages.items() if image.startswith(trtexec["from_image"])), None)
    if stage is None or not any(c.startswith(f"--from={stage} {trtexec['binary']} /usr/local/bin/") for c in copies):
        found.append(f"trtexec is not copied from {trtexec['from_image']}'s {trtexec['binary']}")
    folder = env.get(tensorrt_plans.LIBRARIES_ENV)
    for library in trtexec["libraries"]:
        source = f"{trtexec['library_folder']}/{library}*"
        if not any(
            c.startswith(f"--from={stage} ") and source in c.split() and c.split()[-1].rstrip("/") == folder
            for c in copies
        ):
            found.append(f"{library} is not copied into ${tensorrt_plans.LIBRARIES_ENV} ({folder})")
    if not any("ldd /usr/local/bin/trtexec" in r and 'grep "not found"' in r for r in runs):
        found.append("no build step checks that trtexec finds its libraries (ldd)")
    installs = [r for r in runs if "pip install" in r and '".[image]"' in r]
    if not installs or "lipsync_server.launcher.container" not in installs[0] or "import numpy, cv2" not in installs[0]:
        found.append("the Python packages are installed without an import check in the same step")
    users = [value for kind, value in steps if kind == "USER"]
    if (
        not users
        or users[-1].split(":")[0] in ("root", "0")
        or users[-1].split(":")[0] not in (release["user"], str(release["uid"]))
    ):
        found.append(f"runs as {users[-1] if users else 'root'}, not the image's user {release['user']}")
    entrypoint = [value for kind, value in steps if kind == "ENTRYPOINT"]
    if not entrypoint or json.loads(entrypoint[-1]) != ["lipsync-server", "container"]:
        found.append("the entrypoint is not `lipsync-server container`")
    models = [c.split()[-1] for c in copies if " model_repository " in f" {c} "]
    if models != [container.DEFAULT_REPOSITORY]:
        found.append(f"the repository is copied to {models}, not {container.DEFAULT_REPOSITORY}")
    return found


def test_the_dockerfile_follows_the_releases_facts():
    assert image_problems(DOCKERFILE) == []


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("USER 1000:1000", "USER root", "runs as root"),
        ("USER 1000:1000\n", "", "runs as root"),
        ("libnvonnxparser.so* ", "", "libnvonnxparser.so is not copied"),
        (' | (! grep "not found")', "", "checks that trtexec finds its libraries"),
        (' \\\n && python3 -c "import numpy', ' \\\n && true "', "without an import check"),
        ('["lipsync-server", "container"]', '["/opt/lipsync/scripts/triton_entrypoint.sh"]', "the entrypoint"),
        ("ARG TRITON_RELEASE=26.06", "ARG TRITON_RELEASE=26.05", "not the recorded release 26.06"),
        ("/usr/src/tensorrt/bin/trtexec", "/opt/trtexec", "trtexec is not copied"),
    ],
    ids=[
        "root user",
        "no user",
        "no onnx parser",
        "no ldd check",
        "no import check",
        "old entrypoint",
        "other release",
        "trtexec elsewhere",
    ],
)
def test_a_broken_dockerfile_is_refused(old, new, expected):
    assert old in DOCKERFILE
    problems = image_problems(DOCKERFILE.replace(old, new))
    assert any(expected in problem for problem in problems), problems


def flag_problems(flags: tuple[str, ...], major: int) -> list[str]:
    """trtexec options of this TensorRT major that its trtexec would refuse."""
    known = FACTS["tensorrt"][str(major)]
    names = [flag.split("=", 1)[0] for flag in flags]
    return [f"TensorRT {major}: {name}" for name in names if name not in known["options"] or name in known["removed"]]


@pytest.mark.parametrize("major", FACTS["release"]["tensorrt_majors"])
def test_plan_flags_are_options_of_the_releases_trtexec(major):
    repository = ROOT / "model_repository"
    plans = tensorrt_plans.plans(repository, major)
    assert {p.onnx.parent.parent.name for p in plans} >= {"audio_encoder", "avatar_demo"}
    for plan in plans:
        assert flag_problems(plan.flags, major) == [], plan.onnx
    assert flag_problems(tensorrt_plans.precision_flags(True, major), major) == []  # INT8 versions


def test_flags_a_release_removed_are_refused():
    assert flag_problems(("--workspace=4096",), 10) == ["TensorRT 10: --workspace"]
    assert flag_problems(("--fp16",), 11) == ["TensorRT 11: --fp16"]  # strongly typed from 11.0


def test_the_containers_path_rule_is_the_dali_backends():
    assert container.DALI_PATH.pattern == f"[{FACTS['dali_backend']['path_characters']}]+"
    container.check_dali_path(container.DEFAULT_REPOSITORY)
    with pytest.raises(ValueError, match="without '..'"):
        container.check_dali_path("/srv/lip-sync")


# A stand-in for trtexec: the banner of the release's TensorRT 11, its options, its refusal of
# others ("Unknown option"), and a failure for graphs named broken; it logs every build.
STAND_IN = """#!{python}
import sys, tomllib
facts = tomllib.load(open({facts!r}, "rb"))["tensorrt"]["11"]
if sys.argv[1:] == ["--help"]:
    print("&&&& RUNNING TensorRT.trtexec [TensorRT v110000] [b1] # trtexec --help")
    sys.exit(0)
args = dict(a.split("=", 1) if "=" in a else (a, "") for a in sys.argv[1:])
open({calls!r}, "a").write(args["--onnx"] + "\\n")
unknown = [name for name in args if name not in facts["options"]]
if unknown or "broken" in open(args["--onnx"], "rb").read().decode(errors="replace"):
    print("Unknown option:", unknown)
    sys.exit(1)
open(args["--saveEngine"], "wb").write(b"engine")
"""


@pytest.fixture
def trtexec(tmp_path, monkeypatch) -> Path:
    calls = tmp_path / "calls.log"
    script = tmp_path / "bin" / "trtexec"
    script.parent.mkdir()
    facts = str(ROOT / "deploy" / "image-facts.toml")
    script.write_text(STAND_IN.format(python=shutil.which("python3"), facts=facts, calls=str(calls)))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    calls.touch()
    return calls


def tiny_graph(path: Path, marker: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    node = helper.make_node("Identity", ["X"], ["Y"], name=marker or "identity")
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1])
    onnx.save(helper.make_model(helper.make_graph([node], "g", [x], [y])), str(path))


def catalog(tmp_path: Path, avatars: dict[str, list[str]], pinned: str) -> Path:
    """A repository with the pipeline's configs and avatars whose versions hold tiny graphs."""
    source, repository = ROOT / "model_repository", tmp_path / "repository"
    for model in ("request_validator", "face_generator", "audio_encoder"):
        (repository / model).mkdir(parents=True)
        shutil.copy(source / model / "config.pbtxt", repository / model)
    config = repository / "face_generator" / "config.pbtxt"
    set_parameters(config, pinned_avatars=pinned)
    tiny_graph(repository / "audio_encoder" / "1" / "model.onnx")
    for name, versions in avatars.items():
        (repository / f"avatar_{name}").mkdir()
        shutil.copy(source / "avatar_demo" / "config.pbtxt", repository / f"avatar_{name}")
        for number, marker in enumerate(versions, start=1):
            tiny_graph(repository / f"avatar_{name}" / str(number) / "model.onnx", marker)
    return repository


def built(repository: Path) -> set[str]:
    return {str(p.parent.relative_to(repository)) for p in repository.glob("*/*/model.plan")}


def test_a_catalog_starts_with_the_pinned_plans_and_builds_the_rest_while_serving(tmp_path, trtexec):
    repository = catalog(tmp_path, {"may": ["ok"], "zoe": ["ok", "ok"], "obama": ["ok"]}, pinned="may")
    # What the container builds before it serves: the models that load at start.
    assert tensorrt_plans.build_each(repository, startup_models(repository, "config"), report=lambda _: None) == []
    assert built(repository) == {"audio_encoder/1", "avatar_may/1"}
    lines: list[str] = []
    assert tensorrt_plans.build_each(repository, None, report=lines.append) == []  # while serving
    assert built(repository) == {"audio_encoder/1", "avatar_may/1", "avatar_obama/1", "avatar_zoe/1", "avatar_zoe/2"}
    assert sum(line.startswith("kept") for line in lines) == 2  # the pinned set is not built twice
    assert len(trtexec.read_text().split()) == 5
    record = json.loads((repository / "avatar_zoe" / "2" / "model.plan.json").read_text())
    assert record["tensorrt"] == 110000 and "--fp16" not in record["flags"]  # TensorRT 11: strongly typed


def test_a_version_whose_plan_fails_is_reported_and_skipped_until_it_changes(tmp_path, trtexec, capsys):
    repository = catalog(tmp_path, {"may": ["ok", "broken"], "zoe": ["ok"]}, pinned="may")
    container.build_plans(repository, None)  # what the container runs while serving: never raises
    printed = capsys.readouterr().out
    assert re.search(r"plan failed \S+avatar_may/2/model.plan \(see \S+avatar_may/2/model.plan.log\)", printed)
    assert built(repository) == {"audio_encoder/1", "avatar_may/1", "avatar_zoe/1"}
    assert (repository / "avatar_may" / "2" / "model.plan.failed.json").is_file()
    attempts = len(trtexec.read_text().split())
    failed = tensorrt_plans.build_each(repository, None, report=lambda _: None)  # a restart
    assert [p.onnx.parent.name for p in failed] == ["2"]
    assert len(trtexec.read_text().split()) == attempts  # the same inputs are not built again
    tiny_graph(repository / "avatar_may" / "2" / "model.onnx", "fixed")  # a new export of the version
    assert tensorrt_plans.build_each(repository, None, report=lambda _: None) == []
    assert "avatar_may/2" in built(repository)
    assert not (repository / "avatar_may" / "2" / "model.plan.failed.json").exists()


def test_a_load_on_demand_builds_the_versions_missing_plan_first(tmp_path, trtexec):
    repository = catalog(tmp_path, {"may": ["ok"], "zoe": ["broken"]}, pinned="may")
    assert tensorrt_plans.on_demand(repository, CPU.tensorrt_plans) is None  # the CPU profile builds nothing
    prepare = tensorrt_plans.on_demand(repository, GPU.tensorrt_plans)
    prepare("avatar_may")
    assert built(repository) == {"avatar_may/1"}
    with pytest.raises(RuntimeError, match="the TensorRT plan of version 1 failed to build"):
        prepare("avatar_zoe")
