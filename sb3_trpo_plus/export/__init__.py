"""
Export a trained policy to ONNX: one graph from raw observations to the actions ``model.predict(obs,
deterministic=True)`` returns, with the observation statistics inside, checked against ``predict`` with
ONNX Runtime after it is written.

    from sb3_trpo_plus import export_onnx
    check = export_onnx(model, "policy.onnx")   # raises ExportCheckError when the file disagrees with predict
    print(check)

    python -m sb3_trpo_plus export model.zip policy.onnx --env HalfCheetah-v5

The graph holds, in order: ``VecNormalize``'s observation statistics when they live outside the model (folded in,
see ``vec_normalize``), SB3's preprocessing (image scaling, one-hot encoding), the policy's own normalization and
network, the mode of its action distribution, and ``predict``'s clipping (or unscaling, for squashed policies) to
the action space. It is traced from the policy's own methods (``_predict``, ``predict_values``), so a custom
policy exports as it computes; one that does not trace gets :class:`ExportError`, naming the part.

Exporter: PyTorch's ``torch.export``-based exporter (``torch.onnx.export(..., dynamo=True)``), the default and
supported one since PyTorch 2.9; the TorchScript-based one is deprecated (it warns that it will be removed).
It needs ``onnxscript``; ``onnx`` and ``onnxruntime`` write the metadata and run the check. All three are in the
``export`` extra: ``pip install 'sb3-trpo-plus[export]'``.

The package, one idea a module: :mod:`.errors` (what can go wrong, the extra), :mod:`.metadata` (input and output
names, the file's ``metadata_props``), :mod:`.inputs` (the CPU copy that is traced, the statistics to fold in, the
example inputs, the mask layout), :mod:`.family` (what each policy family adds, chosen once), :mod:`.graph` (the
torch modules that are exported), :mod:`.write` (:func:`export_onnx`), :mod:`.check` (:func:`check_onnx` against
``predict``) and :mod:`.cli` (the command line).
"""

from sb3_trpo_plus.export.check import ExportCheck, check_onnx
from sb3_trpo_plus.export.cli import load_model, main
from sb3_trpo_plus.export.errors import EXTRA, ExportCheckError, ExportError
from sb3_trpo_plus.export.family import (
    EXPORT_FAMILIES,
    ExportFamily,
    MaskedExport,
    PlainExport,
    RecurrentExport,
    export_family,
)
from sb3_trpo_plus.export.graph import FoldedVecNormalize, PolicyGraph
from sb3_trpo_plus.export.inputs import mask_groups, mask_size
from sb3_trpo_plus.export.metadata import (
    ACTION_MASK,
    ACTIONS,
    CRITIC_C,
    CRITIC_H,
    EPISODE_START,
    LOG_STD,
    METADATA_KEYS,
    STATE_C,
    STATE_H,
    VALUE,
    space_to_json,
)
from sb3_trpo_plus.export.write import export_onnx

__all__ = [
    "ACTIONS",
    "ACTION_MASK",
    "CRITIC_C",
    "CRITIC_H",
    "EPISODE_START",
    "EXPORT_FAMILIES",
    "EXTRA",
    "LOG_STD",
    "METADATA_KEYS",
    "STATE_C",
    "STATE_H",
    "VALUE",
    "ExportCheck",
    "ExportCheckError",
    "ExportError",
    "ExportFamily",
    "FoldedVecNormalize",
    "MaskedExport",
    "PlainExport",
    "PolicyGraph",
    "RecurrentExport",
    "check_onnx",
    "export_family",
    "export_onnx",
    "load_model",
    "main",
    "mask_groups",
    "mask_size",
    "space_to_json",
]
