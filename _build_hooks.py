"""setuptools build step of sb3-trpo-plus: ship ``sb3_trpo_plus_zoo.pth`` into site-packages.

``[tool.setuptools.cmdclass]`` in pyproject.toml points ``build_py`` here. Not installed.

The ``.pth`` file (one line that runs ``_sb3_trpo_plus_zoo_hook.install()``) must land at the top of
site-packages, where setuptools puts nothing but modules and packages:

- wheel build (``pip install .``): copy it into ``build_lib``, the wheel's root;
- editable build (``pip install -e .``): setuptools' editable wheel ignores ``build_lib`` (its default
  strategy only writes a finder and its own ``.pth``) but installs whatever is in the unpacked wheel,
  which is ``install_lib`` while it builds; copy it there as well.
"""

from pathlib import Path

from setuptools.command.build_py import build_py

PTH_NAME = "sb3_trpo_plus_zoo.pth"
PTH_SOURCE = Path(__file__).resolve().parent / PTH_NAME


class BuildPyWithPth(build_py):
    """``build_py`` that also copies :data:`PTH_NAME` to the top of the wheel."""

    def run(self) -> None:
        super().run()
        self.copy_file(str(PTH_SOURCE), str(Path(self.build_lib) / PTH_NAME), preserve_mode=False)
        if getattr(self, "editable_mode", False):
            install_lib = getattr(self.distribution.get_command_obj("install"), "install_lib", None)
            if install_lib:
                self.copy_file(str(PTH_SOURCE), str(Path(install_lib) / PTH_NAME), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH_NAME)]
