"""Operator- and function-level profiles of TRPOPlus, to go with ``bench_speed.py --profile`` (section timings).

Usage::

    python -m benchmarks.speed.profile_details fvp        # torch.profiler: operators of one Fisher-vector product
    python -m benchmarks.speed.profile_details critic     # cProfile: the critic's minibatch loop (train() at Zoo settings)
    python -m benchmarks.speed.profile_details rollout    # cProfile: collect_rollouts on HalfCheetah-v5 + VecNormalize
    python -m benchmarks.speed.profile_details fvp-sizes  # FVP time vs batch size / width, and one forward+backward
    (append ``--code-ref HEAD`` to profile the committed code instead of the working tree)

Single torch thread, as in the benchmark. Prints to stdout; findings are summarized in PROFILE.md.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time

import numpy as np
import torch as th

from benchmarks.speed import bench_speed as bench


def _fvp_for(case: bench.Case, algo: str = bench.PLUS):
    """The TRPOPlus Fisher-vector product closure of a case, built the way ``_policy_step`` builds it."""
    from sb3_trpo_plus.fisher import fisher_for
    from sb3_trpo_plus.natural_gradient import gauss_newton_fvp

    model = bench.build_contestants(case, [algo])[0].model
    samples = next(model.rollout_buffer.get(batch_size=None))
    params = [p for name, p in model.policy.named_parameters() if "value" not in name]
    fisher = fisher_for(model.policy.action_dist)
    assert fisher is not None, "every benchmark case has a Gaussian policy, which has an analytic Fisher"
    distribution = model._distribution(samples.observations)
    eta = fisher.parameters(distribution)
    eta_old = tuple(e.detach() for e in eta)
    fvp = gauss_newton_fvp(eta, params, lambda u: fisher.metric(eta_old, u), bench.DAMPING)
    vector = th.randn(sum(p.numel() for p in params))
    return model, fvp, vector


def profile_fvp() -> None:
    from torch.profiler import ProfilerActivity, profile

    for case in (bench.STEP_SMALL, bench.STEP_LARGE):
        _, fvp, vector = _fvp_for(case)
        for _ in range(3):
            fvp(vector)
        reps = 25 if case is bench.STEP_SMALL else 5
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(reps):
                fvp(vector)
        print(f"== {case.name}: {reps} Fisher-vector products")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))


def time_it(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def fvp_sizes() -> None:
    """FVP cost vs one plain forward+backward of the actor, to separate fixed overhead from arithmetic."""
    for case in (bench.STEP_SMALL, bench.STEP_LARGE):
        model, fvp, vector = _fvp_for(case)
        samples = next(model.rollout_buffer.get(batch_size=None))
        obs = samples.observations
        params = [p for name, p in model.policy.named_parameters() if "value" not in name]

        def forward_backward(obs=obs, params=params, policy=model.policy):
            mean = policy.action_net(policy.mlp_extractor.forward_actor(obs))
            th.autograd.grad(mean.sum(), params, allow_unused=True)

        def forward(obs=obs, policy=model.policy):
            with th.no_grad():
                policy.get_distribution(obs)

        reps = 20 if case is bench.STEP_SMALL else 3
        t_fvp = time_it(lambda fvp=fvp, vector=vector: fvp(vector), reps)
        t_fb = time_it(forward_backward, reps)
        t_f = time_it(forward, reps)
        print(
            f"{case.name}: FVP {t_fvp * 1e3:.2f} ms, actor forward+backward {t_fb * 1e3:.2f} ms, "
            f"no-grad get_distribution {t_f * 1e3:.2f} ms"
        )


def run_cprofile(fn, top: int = 30) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    stats = pstats.Stats(profiler).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def profile_critic() -> None:
    contestant = bench.build_contestants(bench.TRAIN_ZOO, [bench.PLUS])[0]
    model = contestant.model
    bench.timed_train(contestant, 0)
    samples = next(model.rollout_buffer.get(batch_size=None))
    params = [p for name, p in model.policy.named_parameters() if "value" not in name]
    actor = [p for p in params if p.requires_grad]

    def critic() -> None:
        contestant.restore()
        model._critic_step(samples.observations, samples.returns, actor)

    print(
        f"_critic_step alone: {time_it(critic, 5) * 1e3:.1f} ms "
        f"({model.n_critic_updates} epochs x {2048 // model.batch_size} minibatches)"
    )
    run_cprofile(critic)


def profile_rollout() -> None:
    env = bench.make_halfcheetah_stack(seed=0)
    model = bench.make_model(bench.PLUS, env, dict(bench.e2e_kwargs(), seed=0), bench.TARGET_KL_PER_DIM["train"])
    model.learn(2048)
    from stable_baselines3.common.callbacks import CallbackList

    callback = CallbackList([])
    callback.init_callback(model)

    def collect() -> None:
        for _ in range(3):
            model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)

    start = time.perf_counter()
    collect()
    print(f"collect_rollouts: {(time.perf_counter() - start) / 3 * 1e3:.0f} ms per 1024 x 2 steps")
    run_cprofile(collect, top=40)


def main() -> None:
    th.set_num_threads(1)
    if "--code-ref" in sys.argv:
        bench.use_code_ref(sys.argv[sys.argv.index("--code-ref") + 1])
    what = sys.argv[1] if len(sys.argv) > 1 else "fvp"
    {"fvp": profile_fvp, "critic": profile_critic, "rollout": profile_rollout, "fvp-sizes": fvp_sizes}[what]()


if __name__ == "__main__":
    main()
