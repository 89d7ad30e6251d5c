"""Checks the import layers (pyproject.toml's [tool.importlinter] contracts) with import-linter,
the model repository's Python files included. They live in version folders ("1") that are no
Python package, so they are linked into one here, build/lint/served_models, as <model>_<version>_<file>.py."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = ROOT / "build" / "lint"
PACKAGE = LINT / "served_models"


def link_served_models() -> None:
    PACKAGE.mkdir(parents=True, exist_ok=True)
    for old in PACKAGE.glob("*.py"):  # this folder is made here and only here
        old.unlink()
    (PACKAGE / "__init__.py").write_text('"""The model repository\'s Python files, linked for lint-imports."""\n')
    for source in sorted(ROOT.glob("model_repository/*/[0-9]*/*.py")):
        version, model = source.parent, source.parent.parent
        (PACKAGE / f"{model.name}_{version.name}_{source.name}").symlink_to(source)


if __name__ == "__main__":
    link_served_models()
    lint_imports = Path(sys.executable).parent / "lint-imports"
    sys.exit(subprocess.run([str(lint_imports)], cwd=ROOT, env={"PYTHONPATH": str(LINT)}).returncode)
