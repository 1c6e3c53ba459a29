"""What can go wrong in an export, and the optional packages it needs (the ``export`` extra)."""

from __future__ import annotations

from typing import Any

EXTRA = "pip install 'sb3-trpo-plus[export]'"


class ExportError(ValueError):
    """The policy (or an argument) cannot be exported as asked; the message names the part."""


class ExportCheckError(RuntimeError):
    """The written file disagrees with ``predict`` beyond the tolerance (the file is removed)."""


def require() -> tuple[Any, Any]:
    """``onnx`` and ``onnxruntime``, or one line naming the extra (``onnxscript`` is checked too: the exporter needs it)."""
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"export_onnx needs {error.name}, which is not installed: {EXTRA}", name=error.name
        ) from error
    return onnx, onnxruntime
