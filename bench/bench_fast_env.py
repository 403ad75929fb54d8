"""FinRL's ``StockTradingEnv`` against the numpy twin (``trainers.rl.fast_env``).

The market is the trainer's: synthetic ``ml_features`` for EURUSD and XAUUSD, turned
into FinRL's frame with the default 8 indicators, the first ``--days`` days (one
episode is that many steps, the last a FinRL no-op).

* Raw env: steps/s with random actions drawn in advance (float32, as SB3 passes
  them), FinRL's env and the fast single env called directly, the batched
  ``FastVecEnv`` at N = 1, 8 and 32 through SB3's ``VecEnv.step`` (env-steps/s: N per
  call). All arms run as adjacent groups in rotating order (harness ``run_pairs``),
  each group after waiting for a quiet machine.
* PPO end to end, the trainer's PPO defaults (2,048-step rollouts, 1 torch thread,
  cpu) with the project's ``portfolio_value_change`` reward: FinRL's env and the fast
  env, each wrapped and in a ``DummyVecEnv`` as the trainer builds it, against
  ``FastVecEnv(terminal_reward="zero")`` (the same reward) at the best N of
  ``--ppo-n``, with ``n_steps = 2048 / N`` so that a rollout stays 2,048 steps. The
  best N (by steps per CPU second) is picked in one scouting run each, then timed in
  the groups. Each PPO run also records the CPU time in SB3's ``collect_rollouts``
  (env steps and policy) and ``train`` (the update, the same work on every env).

Ratios are medians of the per-group ratios (each group's arms ran back to back).
Rates are given per wall second and per second of this process's CPU time: on a busy
machine the CPU rate is the steadier one.

Usage: ``python bench/bench_fast_env.py [--days D] [--repeats R] [--quick]
[--results-dir DIR]``; results in ``bench/results/fast_env.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from harness import (
    Results,
    add_quiet_arguments,
    add_results_arguments,
    clean_or_all,
    median,
    paired_ratios,
    run_pairs,
    table,
)

SYMBOLS = ("EURUSD", "XAUUSD")
RAW_N = (1, 8, 32)


def _market(days: int) -> tuple[Any, Any, list[str]]:
    from trainers.data.synth import generate_ml_features
    from trainers.rl.config import DEFAULT_INDICATORS
    from trainers.rl.fast_env import MarketArrays
    from trainers.rl.finrl_env import reindex_days, to_finrl_frame

    indicators = list(DEFAULT_INDICATORS)
    features = generate_ml_features(SYMBOLS, periods=days + 120, seed=11)
    frame = to_finrl_frame(features, indicators)
    frame = reindex_days(frame[frame.index < days])
    return frame, MarketArrays.from_frame(frame, indicators), indicators


def _rates(start: float, cpu: float, steps: int, key: str) -> dict[str, float]:
    """Wall and process-CPU time since ``start``/``cpu``, and the step rates of both
    (on a busy machine the CPU rate is the steadier one)."""
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        key: steps / seconds,
        f"{key}_cpu": steps / cpu_seconds,
    }


def _summarize(used: list[dict[str, Any]], arms: Any, key: str) -> dict[str, float]:
    """Per arm: median rate (wall and CPU) and median per-group ratio to FinRL's."""
    out: dict[str, float] = {}
    for arm in arms:
        for k in (key, f"{key}_cpu"):
            suffix = k[len(key) :]
            out[arm + suffix] = median(p[arm][k] for p in used)
            out[f"{arm}{suffix}_over_finrl"] = median(
                paired_ratios([p[arm][k] for p in used], [p["finrl"][k] for p in used])
            )
    return out


# --------------------------------------------------------------------------- raw env
def _single_env_arm(make: Callable[[], Any], steps: int, n_tickers: int) -> Callable[[], dict]:
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, n_tickers)).astype(np.float32)

    def arm() -> dict[str, float]:
        env = make()
        env.reset()
        gc.collect()
        start, cpu = time.perf_counter(), time.process_time()
        for action in actions:
            if env.step(action)[2]:
                env.reset()
        return _rates(start, cpu, steps, "env_steps_per_s")

    return arm


def _vec_env_arm(make: Callable[[], Any], calls: int, n_envs: int, n_tickers: int) -> Callable:
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (calls, n_envs, n_tickers)).astype(np.float32)

    def arm() -> dict[str, float]:
        env = make()
        env.reset()
        gc.collect()
        start, cpu = time.perf_counter(), time.process_time()
        for action in actions:
            env.step(action)
        return _rates(start, cpu, calls * n_envs, "env_steps_per_s")

    return arm


def bench_raw(frame: Any, market: Any, indicators: list[str], args: argparse.Namespace) -> dict:
    from trainers.rl.fast_env import FastStockTradingEnv
    from trainers.rl.fast_vec_env import FastVecEnv
    from trainers.rl.finrl_env import EnvConfig, make_finrl_env

    config = EnvConfig()
    n = market.stock_dim
    s = args.raw_seconds  # each arm's steps sized to about this long
    arms = {
        "finrl": _single_env_arm(
            lambda: make_finrl_env(frame, indicators, config), int(850 * s), n
        ),
        "fast": _single_env_arm(
            lambda: FastStockTradingEnv.from_config(market, config), int(25_000 * s), n
        ),
    }
    for n_envs in RAW_N:
        calls = int(min(40_000, 15_000 * n_envs) * s / n_envs)
        arms[f"vec{n_envs}"] = _vec_env_arm(
            lambda n_envs=n_envs: FastVecEnv.from_config(market, config, n_envs), calls, n_envs, n
        )
    for arm in arms.values():  # warm-up
        arm()
    pairs = run_pairs(
        arms,
        wanted=args.repeats,
        max_pairs=args.max_pairs,
        max_others=args.max_others,
        quiet_wait=args.quiet_wait,
        label="raw",
    )
    used = clean_or_all(pairs)
    out: dict[str, Any] = {"pairs": pairs, "pairs_clean": sum(p["clean"] for p in pairs)}
    return out | _summarize(used, arms, "env_steps_per_s")


# --------------------------------------------------------------------------- PPO
def _ppo_arm(make_env: Callable[[], Any], n_envs: int, steps: int) -> Callable[[], dict]:
    from trainers.rl.agents import build_model

    def arm() -> dict[str, float]:
        model = build_model("ppo", make_env(), {"n_steps": 2048 // n_envs}, timesteps=steps, seed=0)
        parts = {"rollout_cpu_seconds": 0.0, "update_cpu_seconds": 0.0}
        for part, name in (
            ("rollout_cpu_seconds", "collect_rollouts"),
            ("update_cpu_seconds", "train"),
        ):
            setattr(model, name, _cpu_timed(getattr(model, name), parts, part))
        gc.collect()
        start, cpu = time.perf_counter(), time.process_time()
        model.learn(total_timesteps=steps)
        assert model.num_timesteps >= steps
        return _rates(start, cpu, model.num_timesteps, "steps_per_s") | parts

    return arm


def _cpu_timed(fn: Callable, totals: dict[str, float], key: str) -> Callable:
    """``fn``, adding the process CPU time of each call to ``totals[key]``."""

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[key] += time.process_time() - start

    return timed


def bench_ppo(frame: Any, market: Any, indicators: list[str], args: argparse.Namespace) -> dict:
    from stable_baselines3.common.vec_env import DummyVecEnv

    from trainers.rl.fast_env import FastStockTradingEnv
    from trainers.rl.fast_vec_env import FastVecEnv
    from trainers.rl.finrl_env import EnvConfig, make_finrl_env
    from trainers.rl.rewards import wrap_reward

    config = EnvConfig()
    reward = "portfolio_value_change"
    scaling = {"scaling": config.reward_scaling}
    steps = args.ppo_steps

    def finrl() -> Any:
        env = make_finrl_env(frame, indicators, config)
        return DummyVecEnv([lambda: wrap_reward(env, reward, **scaling)])

    def fast() -> Any:
        env = FastStockTradingEnv.from_config(market, config)
        return DummyVecEnv([lambda: wrap_reward(env, reward, **scaling)])

    def batched(n_envs: int) -> Callable[[], Any]:
        return lambda: FastVecEnv.from_config(market, config, n_envs, terminal_reward="zero")

    _ppo_arm(fast, 1, 2048)()  # warm-up: imports, allocator
    scouted = {n: _ppo_arm(batched(n), n, steps)() for n in args.ppo_n}
    scouting = {n: r["steps_per_s_cpu"] for n, r in scouted.items()}  # CPU: steadier
    best = max(scouting, key=lambda n: scouting[n])
    print("PPO scouting, steps/s by N: " + ", ".join(f"{n}: {v:,.0f}" for n, v in scouting.items()))
    arms = {
        "finrl": _ppo_arm(finrl, 1, steps),
        "fast": _ppo_arm(fast, 1, steps),
        "batched": _ppo_arm(batched(best), best, steps),
    }
    pairs = run_pairs(
        arms,
        wanted=args.ppo_repeats,
        max_pairs=args.ppo_repeats + 1,
        max_others=args.max_others,
        quiet_wait=args.quiet_wait,
        label="ppo",
    )
    used = clean_or_all(pairs)
    out: dict[str, Any] = {
        "steps": steps,
        "scouting_steps_per_s": scouting,
        "best_n": best,
        "pairs": pairs,
        "pairs_clean": sum(p["clean"] for p in pairs),
    }
    for arm in arms:
        for part in ("rollout_cpu_seconds", "update_cpu_seconds"):
            out[f"{arm}_{part}"] = median(p[arm][part] for p in used)
    return out | _summarize(used, arms, "steps_per_s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=400, help="episode length")
    parser.add_argument("--raw-seconds", type=float, default=1.2, help="per raw-env arm")
    parser.add_argument("--repeats", type=int, default=3, help="clean raw-env groups")
    parser.add_argument("--max-pairs", type=int, default=4, help="raw-env groups at most")
    parser.add_argument("--ppo-steps", type=int, default=4096)
    parser.add_argument("--ppo-repeats", type=int, default=2, help="clean PPO groups")
    parser.add_argument("--ppo-n", default="8,16,32", help="batch widths PPO scouts")
    add_quiet_arguments(parser, threshold=0.10, patience_s=10.0)
    add_results_arguments(parser, "fast_env", "short arms, one group each, under a minute")
    args = parser.parse_args(argv)
    if args.quick:
        args.raw_seconds, args.repeats, args.max_pairs = 0.3, 1, 1
        args.ppo_steps, args.ppo_repeats, args.ppo_n, args.quiet_wait = 2048, 1, "16", 2.0
    args.ppo_n = [int(n) for n in str(args.ppo_n).split(",")]

    import stable_baselines3
    import torch

    torch.set_num_threads(1)
    results = Results(
        args,
        torch=torch.__version__,
        torch_threads=str(torch.get_num_threads()),
        stable_baselines3=stable_baselines3.__version__,
    )
    frame, market, indicators = _market(args.days)
    results["data"] = {
        "tickers": list(market.tickers),
        "indicators": indicators,
        "state_dim": market.state_dim,
        "episode_steps": market.n_days,
    }
    results["raw"] = raw = bench_raw(frame, market, indicators, args)
    print(f"raw: finrl {raw['finrl']:,.0f}, fast {raw['fast']:,.0f} steps/s", flush=True)
    results["ppo"] = ppo = bench_ppo(frame, market, indicators, args)
    print(f"ppo: finrl {ppo['finrl']:,.0f}, batched {ppo['batched']:,.0f} steps/s", flush=True)
    results.write(_markdown)
    return 0


def _markdown(r: Results) -> list[str]:
    data, raw, ppo = r["data"], r["raw"], r["ppo"]
    lines = r.header("FinRL's env against the numpy twin")
    lines += [
        f"{len(data['tickers'])} tickers, {len(data['indicators'])} indicators (state "
        f"{data['state_dim']}), {data['episode_steps']}-step episodes. Medians over the clean "
        "groups (all groups where none was clean); ratios are medians of each group's "
        "ratio. Definitions in the module docstring.",
        "",
        f"Raw env, random actions ({raw['pairs_clean']} of {len(raw['pairs'])} groups clean):",
        "",
    ]
    names = {"finrl": "FinRL StockTradingEnv", "fast": "FastStockTradingEnv"}
    names |= {f"vec{n}": f"FastVecEnv, N = {n}" for n in RAW_N}
    lines += _rate_table(raw, names, "env-steps/s")
    lines += [
        "",
        f"PPO end to end, {ppo['steps']:,} steps, portfolio_value_change reward "
        f"({ppo['pairs_clean']} of {len(ppo['pairs'])} groups clean); FastVecEnv at "
        f"N = {ppo['best_n']}, the best of "
        + ", ".join(f"{n}: {v:,.0f}" for n, v in ppo["scouting_steps_per_s"].items())
        + " steps per CPU second in one scouting run each:",
        "",
    ]
    names = {
        "finrl": "FinRL env, wrapped, DummyVecEnv",
        "fast": "FastStockTradingEnv, wrapped, DummyVecEnv",
        "batched": f"FastVecEnv, N = {ppo['best_n']}, n_steps = {2048 // ppo['best_n']}",
    }
    lines += _rate_table(ppo, names, "steps/s")
    lines += [
        "",
        "Where PPO's CPU time goes (medians, seconds: SB3's `collect_rollouts`, which steps "
        "the env and runs the policy, and `train`, the update):",
        "",
        *table(
            ["env", "rollout CPU s", "update CPU s"],
            [
                [
                    name,
                    f"{ppo[arm + '_rollout_cpu_seconds']:.2f}",
                    f"{ppo[arm + '_update_cpu_seconds']:.2f}",
                ]
                for arm, name in names.items()
            ],
        ),
    ]
    return lines


def _rate_table(figures: dict[str, Any], names: dict[str, str], unit: str) -> list[str]:
    return table(
        ["env", f"{unit} (wall)", "× FinRL (wall)", f"{unit} per CPU second", "× FinRL (CPU)"],
        [
            [
                name,
                f"{figures[arm]:,.0f}",
                f"{figures[arm + '_over_finrl']:.2f}×",
                f"{figures[arm + '_cpu']:,.0f}",
                f"{figures[arm + '_cpu_over_finrl']:.2f}×",
            ]
            for arm, name in names.items()
        ],
    )


if __name__ == "__main__":
    raise SystemExit(main())
