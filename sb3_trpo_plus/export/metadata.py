"""What a deployment reads from the file: the names of the graph's inputs and outputs, and its ``metadata_props``
(the spaces as JSON, the inputs and outputs, where the observation statistics came from)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from gymnasium import spaces

from sb3_trpo_plus.export.errors import ExportError

#: the names of the graph's inputs and outputs besides the observations (a Dict's keys name its inputs)
ACTION_MASK, EPISODE_START, STATE_H, STATE_C = "action_mask", "episode_start", "lstm_h", "lstm_c"
CRITIC_H, CRITIC_C = "critic_lstm_h", "critic_lstm_c"
ACTIONS, VALUE, LOG_STD = "actions", "value", "log_std"
#: ``metadata_props`` keys written into the file
METADATA_KEYS = ("observation_space", "action_space", "inputs", "outputs", "producer", "vec_normalize")


def space_to_json(space: spaces.Space) -> dict[str, Any]:
    """A JSON description of a Gymnasium space (bounds that are all equal are written once)."""

    def bound(values: np.ndarray) -> Any:
        flat = np.asarray(values).ravel()
        if flat.size and np.all(flat == flat[0]):
            return flat[0].item()
        return np.asarray(values).tolist()

    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": bound(space.low),
            "high": bound(space.high),
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "start": space.start.tolist()}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {key: space_to_json(sub) for key, sub in space.spaces.items()}}
    raise ExportError(
        f"Cannot export observation or action space {space}: allowed are Box, Discrete, MultiDiscrete, "
        "MultiBinary and Dict of those"
    )


def write_metadata(
    proto: Any,
    observation_space: spaces.Space,
    action_space: spaces.Space,
    inputs: list[str],
    outputs: list[str],
    model_name: str,
    folded: bool,
) -> None:
    """Replace ``proto``'s ``metadata_props`` with the :data:`METADATA_KEYS` entries.

    :param proto: the ONNX ``ModelProto``
    :param observation_space: the policy's observation space
    :param action_space: the policy's action space
    :param inputs: the graph's input names, in order
    :param outputs: the graph's output names, in order
    :param model_name: the class name of what was exported (algorithm or policy)
    :param folded: whether VecNormalize's statistics are folded into the graph
    """
    metadata = {
        "observation_space": json.dumps(space_to_json(observation_space)),
        "action_space": json.dumps(space_to_json(action_space)),
        "inputs": json.dumps(inputs),
        "outputs": json.dumps(outputs),
        "producer": f"sb3_trpo_plus.export_onnx ({model_name}, deterministic actions as predict returns them)",
        "vec_normalize": "folded into the graph" if folded else "none",
    }
    assert tuple(metadata) == METADATA_KEYS
    del proto.metadata_props[:]
    for key, text in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, text
