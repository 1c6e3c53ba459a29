"""The command line: ``python -m sb3_trpo_plus export MODEL.zip POLICY.onnx`` loads a saved model of any family,
exports it and prints the comparison with ``predict``."""

from __future__ import annotations

import os

from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_trpo_plus import families
from sb3_trpo_plus.export.errors import ExportCheckError, ExportError
from sb3_trpo_plus.export.inputs import OBS_DTYPES
from sb3_trpo_plus.export.write import export_onnx


def load_model(path: str | os.PathLike) -> BaseAlgorithm:
    """Load a saved TRPOPlus, MaskableTRPOPlus or RecurrentTRPOPlus, whichever its policy class says, on the CPU."""
    from stable_baselines3.common.save_util import load_from_zip_file

    data, _, _ = load_from_zip_file(str(path), device="cpu", print_system_info=False)
    policy_class = data.get("policy_class") if data else None
    family = families.policy_family(policy_class) if isinstance(policy_class, type) else "plain"
    algorithm: type[BaseAlgorithm] = families.algorithm_class(family)
    return algorithm.load(str(path), device="cpu")


def main(argv: list[str] | None = None) -> int:
    """``python -m sb3_trpo_plus export MODEL.zip POLICY.onnx``: export, check, and print the comparison."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m sb3_trpo_plus export",
        description="Export a saved TRPOPlus model's deterministic policy to ONNX (observation statistics included) "
        "and check the file against predict with ONNX Runtime.",
    )
    parser.add_argument("model", help="the .zip that model.save wrote (TRPOPlus, MaskableTRPOPlus or RecurrentTRPOPlus)")
    parser.add_argument("output", help="the .onnx file to write")
    parser.add_argument(
        "--vec-normalize",
        default=None,
        metavar="PATH",
        help="VecNormalize.save's file, for models trained behind VecNormalize (folded into the graph)",
    )
    parser.add_argument(
        "--env", default=None, help="env id whose rollout is added to the check (default: sampled observations only)"
    )
    parser.add_argument(
        "--obs-dtype",
        default=None,
        choices=OBS_DTYPES,
        help="dtype of the float observation inputs (default: the observation space's, e.g. float64 for MuJoCo tasks)",
    )
    parser.add_argument("--value", action="store_true", help="also output the value estimate")
    parser.add_argument("--log-std", action="store_true", help="also output the Gaussian's log standard deviation")
    parser.add_argument("--samples", type=int, default=256, help="observations sampled for the check (default: 256)")
    parser.add_argument("--rollout-steps", type=int, default=256, help="steps of the --env rollout (default: 256)")
    parser.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance on float outputs (default: 1e-5)")
    parser.add_argument("--rtol", type=float, default=1e-5, help="relative tolerance on float outputs (default: 1e-5)")
    args = parser.parse_args(argv)
    try:
        model = load_model(args.model)
        result = export_onnx(
            model,
            args.output,
            vec_normalize=args.vec_normalize,
            obs_dtype=args.obs_dtype,
            value=args.value,
            log_std=args.log_std,
            rollout_env=args.env,
            n_sampled=args.samples,
            rollout_steps=args.rollout_steps,
            atol=args.atol,
            rtol=args.rtol,
        )
    except (ExportError, ExportCheckError, ModuleNotFoundError) as error:
        print(f"error: {error}")
        return 1
    print(result)
    return 0
