"""Prints the files `make artifacts` is built from: the build script, every project module it
imports (found by the standard library's modulefinder, so imports inside functions count), the
checkpoints and the avatar model templates. The Makefile derives its rebuild rule from this list:
editing any of them (framing.py's constants are compiled into the encoder graph, say) rebuilds.
Needs only the standard library, so any python3 runs it before the environment exists."""

import modulefinder
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "scripts" / "build_artifacts.py"
DATA = ("checkpoints/**/*.pth", "server/lipsync_server/avatars/avatar_model/**/*.pbtxt")


def sources() -> list[Path]:
    finder = modulefinder.ModuleFinder(
        path=[str(ROOT / "protocol"), str(ROOT / "client"), str(ROOT / "server"), str(BUILD.parent)]
    )  # the project's modules only
    finder.run_script(str(BUILD))
    files = (getattr(module, "__file__", None) for module in finder.modules.values())
    modules = {Path(file) for file in files if file}
    data = {path for pattern in DATA for path in ROOT.glob(pattern)}
    return sorted(p.relative_to(ROOT) for p in modules | data if p.resolve().is_relative_to(ROOT))


if __name__ == "__main__":
    print(" ".join(map(str, sources())))
