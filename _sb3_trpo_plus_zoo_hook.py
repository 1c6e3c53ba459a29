"""Interpreter-start hook that registers TRPOPlus with the RL Zoo when, and only when, the Zoo is imported.

``sb3_trpo_plus_zoo.pth`` (installed into site-packages next to this module) runs :func:`install` at
interpreter start. :func:`install` only puts a :class:`ZooImportHook` at the front of ``sys.meta_path``:
this module imports nothing but ``os`` and ``sys`` (both already loaded by ``site``), so Python's start
stays as fast as before. Once one of the Zoo modules in :data:`TARGETS` has been executed, the hook
calls :func:`sb3_trpo_plus.zoo._on_zoo_import`, which adds ``trpo_plus`` (and the families ``trpo_plus_mask``,
``trpo_plus_lstm``) to that module's tables.

This module lives outside the ``sb3_trpo_plus`` package on purpose: importing any submodule of
``sb3_trpo_plus`` runs ``sb3_trpo_plus/__init__.py``, which imports torch.

Set the environment variable ``SB3_TRPO_PLUS_ZOO_HOOK=0`` to switch the hook off.
"""

import os
import sys

# Nothing beyond os and sys at interpreter start: typing is only for the type checker.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any

#: Zoo modules after whose execution ``sb3_trpo_plus.zoo`` registers something.
TARGETS = frozenset({"rl_zoo3.utils", "rl_zoo3.hyperparams_opt", "rl_zoo3.exp_manager"})

#: Set this environment variable to ``0`` to disable the hook.
DISABLE_VARIABLE = "SB3_TRPO_PLUS_ZOO_HOOK"


def _after_import(fullname: str) -> None:
    """Run the registration for the freshly executed Zoo module ``fullname``; warn instead of failing."""
    try:
        from sb3_trpo_plus.zoo import _on_zoo_import

        _on_zoo_import(fullname)
    except Exception as error:  # never break the Zoo (and its other algorithms) because of us
        import warnings

        message = f"sb3-trpo-plus could not register trpo_plus, trpo_plus_mask and trpo_plus_lstm with the RL Zoo ({fullname})"
        warnings.warn(f"{message}: {error!r}", stacklevel=2)


class _RegisteringLoader:
    """Wraps the loader of one Zoo module: executes the module, then registers TRPOPlus in it."""

    def __init__(self, loader: "Any", fullname: str) -> None:
        self._loader = loader
        self._fullname = fullname

    def create_module(self, spec: "ModuleSpec") -> "ModuleType | None":
        return self._loader.create_module(spec)

    def exec_module(self, module: "ModuleType") -> None:
        self._loader.exec_module(module)
        _after_import(self._fullname)

    def __getattr__(self, name: str) -> "Any":  # get_source, get_filename, is_package, ...
        return getattr(self._loader, name)


class ZooImportHook:
    """A ``sys.meta_path`` finder that answers only for :data:`TARGETS`: it asks the finders after itself
    for the module's spec and wraps the spec's loader so that registration runs right after the module."""

    def find_spec(self, fullname: str, path: "Any" = None, target: "Any" = None) -> "ModuleSpec | None":
        if fullname not in TARGETS:
            return None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if finder is self or isinstance(finder, ZooImportHook) or find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _RegisteringLoader(spec.loader, fullname)
        return spec


def install() -> None:
    """Put the hook at the front of ``sys.meta_path`` (once); register at once in Zoo modules already imported."""
    if os.environ.get(DISABLE_VARIABLE, "1").strip().lower() in {"0", "false", "no", "off"}:
        return
    if not any(isinstance(finder, ZooImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, ZooImportHook())
    for fullname in sorted(TARGETS):
        if fullname in sys.modules:
            _after_import(fullname)
