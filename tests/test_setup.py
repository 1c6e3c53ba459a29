"""The README's set-up brings what the README's own commands use: the test tools, tensorboard, enjoy's window."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def install_lines() -> list[str]:
    """The install commands of the README's *Install* section."""
    section = README.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("pip install torch==2.13.0 && pip install ")]


def extras_of(command: str) -> list[str]:
    """``pip install -e ".[zoo,dev]"`` -> ``["zoo", "dev"]``."""
    found = re.search(r"\[([a-z,]+)\]", command)
    assert found is not None, command
    return found.group(1).split(",")


def requirements(extras: list[str]) -> set[str]:
    """The names (with their own extras, e.g. ``gymnasium[classic-control]``) that installing these extras brings."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in extras:
        specs += project["optional-dependencies"][extra]
    return {re.match(r"[A-Za-z0-9_.-]+(\[[^\]]*\])?", spec).group(0).lower() for spec in specs}  # type: ignore[union-attr]


def test_every_install_line_brings_tensorboard_and_enjoys_renderer() -> None:
    """``tensorboard_log=`` needs tensorboard; the README's ``enjoy`` opens a window, which the classic-control
    tasks draw with pygame (gymnasium's classic-control extra): whichever way one installs, both come."""
    lines = install_lines()
    assert len(lines) == 3, lines
    for line in lines:
        assert {"tensorboard", "gymnasium[classic-control]"} <= requirements(extras_of(line)), line


def test_readme_environment_runs_the_readme_test_commands() -> None:
    """The quickstart's ``.venv`` (scripts/setup_venv.sh) is the README's Install line for a clone, and that brings
    pytest and sb3-contrib (the parity and fault tests' peer); every test file the README names exists."""
    clone = [line for line in install_lines() if "pip install -e " in line]
    assert len(clone) == 1, install_lines()
    setup = (ROOT / "scripts" / "setup_venv.sh").read_text()
    editable = re.search(r'pip install --quiet -e "(\.\[[a-z,]+\])"', setup)
    assert editable is not None, setup
    assert sorted(extras_of(editable.group(1))) == sorted(extras_of(clone[0]))
    assert {"pytest", "sb3-contrib"} <= requirements(extras_of(clone[0]))
    commands = re.findall(r"`pytest (tests/\S+\.py)`", README)
    assert commands, "the README shows no test command"
    for test_file in commands:
        assert (ROOT / test_file).is_file(), test_file


def test_every_subpackage_is_shipped() -> None:
    """pyproject.toml lists the packages the wheel ships: every folder of sb3_trpo_plus with an ``__init__.py``."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "sb3_trpo_plus").rglob("__init__.py")}
    assert found <= listed, f"not shipped in the wheel: {sorted(found - listed)}"
