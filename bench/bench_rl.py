"""RL training speed: FinRL's env against the fast env, and what tracking costs.

Every algorithm (PPO, A2C, SAC, TD3, DDPG with the trainer's defaults, MLP policies
on CPU, ``torch.set_num_threads(1)``), on the trainer's default configuration (scaled
observation, notional sizing, ``log_return`` reward):

* **env speed**: plain ``model.learn(N)`` on FinRL's ``StockTradingEnv``
  (``env="finrl"``, one env in a ``DummyVecEnv``) against the fast env (``env="fast"``,
  the batched ``FastVecEnv``; PPO and A2C at the best N of ``--scout-n``, picked by
  steps per CPU second in one scouting run each, off-policy at N = 1). Each algorithm's
  parameters are what ``RLTrainer`` gives it (``rollout_params``: PPO's rollout stays
  2,048 steps at any N; A2C keeps ``n_steps=5`` per env, so at N its rollout is 5·N
  steps and it updates N times less often per step: not the same training).
* **tracking overhead**, at the fast env's speed: the same training twice, **plain**
  (SB3's default logger, no callback) and **tracked** (what ``RLTrainer`` adds:
  ``RewardHistoryCallback`` writing every env's steps columnar through the batch writer
  into embedded chDB, the ``LossWriter`` logger; timed until the writer's ``close()``
  returned with every row inserted, checked with ``count()``).

Arms run as adjacent pairs in alternating order (ABBA), each pair after waiting for a
quiet machine, until ``--repeats`` pairs are clean (other processes used at most
``--max-others`` of the CPUs) or ``--max-pairs`` ran. Figures are medians over the
clean pairs (all pairs where none was clean):

* wall / CPU overhead: tracked over plain wall time and process CPU time (all
  threads, chDB's included), median of the pairs' ratios;
* attributed overhead: time inside our code over the rest of the tracked run: the
  callback's wall time plus the CPU time of the batch writer's sealing and inserts
  (in its background thread or at close). chDB's work on its own threads is only in
  the CPU column. The target (3%) is on this one: the other two swing by several %
  between identical runs on a shared machine.

Checkpoints are measured on their own (one save: SB3 state and, off-policy, the
replay buffer) and amortized over the default cadence of 100 episodes. Also
reported: the callback's cost per step in isolation.

Usage: ``python bench/bench_rl.py [--on-policy-steps N] [--off-policy-steps M]
[--repeats R] [--agents ppo,a2c,...] [--scout-n 8,16,32] [--quick] [--results-dir DIR]``.
Results go to ``bench/results/rl.json`` and ``rl.md`` (``--quick``: PPO and SAC, a few
hundred steps, one pair; writes nothing unless ``--results-dir`` is given).
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from pathlib import Path
from typing import Any

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

TARGET_OVERHEAD_PCT = 3.0
EPISODES_PER_CHECKPOINT = 100
CHECKPOINT_AFTER_STEPS = 500


ON_POLICY = ("ppo", "a2c")


def _setup(tmp: Path) -> tuple[Any, Any]:
    os.environ["SUHO_DATA_DIR"] = str(tmp / "suho")
    from repositories.features import FeatureTable
    from suho_models.db import Database, migrations
    from trainers.data.synth import generate_ml_features
    from trainers.rl import RLConfig
    from trainers.rl.environment import load_market

    url = f"clickhouse+chdb:///{tmp / 'chdb'}/bench_rl"
    migrations.upgrade(url)
    db = Database(url)
    FeatureTable(db).write(generate_ml_features(("EURUSD", "XAUUSD"), periods=600, seed=11))
    return db, load_market(RLConfig(), db)


def _config(agent: str, env: str, n_envs: int) -> Any:
    from trainers.rl import RLConfig

    return RLConfig(agent=agent, env=env, n_envs=n_envs)


def _model(agent: str, market: Any, config: Any, steps: int) -> Any:
    from trainers.rl.agents import build_model
    from trainers.rl.environment import make_vec_env
    from trainers.rl.trainer import rollout_params

    env = make_vec_env(market.train, market, config)
    return build_model(agent, env, rollout_params(config), timesteps=steps, seed=0)


def _plain(agent: str, market: Any, config: Any, steps: int) -> dict[str, float]:
    model = _model(agent, market, config, steps)
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=steps)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert model.num_timesteps >= steps
    done = model.num_timesteps
    return {"seconds": wall, "cpu_seconds": cpu, "steps": done, "steps_per_s": done / wall}


class _Stopwatch:
    """Time spent inside wrapped callables: wall time (perf_counter, ~50 ns a call) for
    the training thread's calls; the calling thread's CPU time (``thread_time``) for the
    writer, whose background thread would otherwise count its waits for the GIL."""

    def __init__(self, clock: Any = time.perf_counter) -> None:
        self.clock = clock
        self.seconds = 0.0

    def wrap(self, fn: Any) -> Any:
        clock = self.clock

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += clock() - start

        return timed


def _tracked(agent: str, market: Any, config: Any, steps: int, db: Any) -> dict[str, float]:
    """The tracked run; also the time spent in our callback and in the writer's sealing
    and inserts (in whichever thread they ran)."""
    from repositories.runs import AgentRunRepository
    from repositories.series import RewardHistoryRepository
    from trainers.rl.callbacks import RewardHistoryCallback, attach_loss_writer

    run = AgentRunRepository(db).create({"run_name": f"bench-{agent}", "agent_type": agent})
    model = _model(agent, market, config, steps)
    losses = attach_loss_writer(model, agent)
    in_callback, in_writer = _Stopwatch(), _Stopwatch(time.thread_time)
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    with RewardHistoryRepository(db).logger(run.run_id) as rewards:
        writer = rewards.writer
        writer._seal_holding_seal_lock = in_writer.wrap(writer._seal_holding_seal_lock)
        writer._insert_batches = in_writer.wrap(writer._insert_batches)
        callback = RewardHistoryCallback(rewards, losses, checkpoint_every=None)
        callback._on_step = in_callback.wrap(callback._on_step)
        callback._on_rollout_start = in_callback.wrap(callback._on_rollout_start)
        model.learn(total_timesteps=steps, callback=callback)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rows = RewardHistoryRepository(db).count(run.run_id)
    assert rows == model.num_timesteps, (rows, model.num_timesteps)
    return {
        "seconds": wall,
        "cpu_seconds": cpu,
        "steps": model.num_timesteps,
        "callback": in_callback.seconds,
        "writer": in_writer.seconds,
    }


def _checkpoint_seconds(agent: str, market: Any, config: Any, db: Any) -> dict[str, float]:
    """One save, as RLTrainer does it at a checkpoint (after some training)."""
    from repositories.checkpoints import AgentCheckpointRepository
    from repositories.runs import AgentRunRepository
    from trainers.rl.agents import OFF_POLICY, model_to_bytes, replay_buffer_to_bytes

    model = _model(agent, market, config, CHECKPOINT_AFTER_STEPS)
    model.learn(total_timesteps=CHECKPOINT_AFTER_STEPS)
    run = AgentRunRepository(db).create({"run_name": f"bench-ckpt-{agent}", "agent_type": agent})
    repo = AgentCheckpointRepository(db)
    start = time.perf_counter()
    data = model_to_bytes(model)
    repo.save_checkpoint(run.run_id, data, "sb3_state", {"mean_reward": 0.0})
    agent_s = time.perf_counter() - start
    buffer_s, buffer_bytes = 0.0, 0
    if agent in OFF_POLICY:
        start = time.perf_counter()
        blob = replay_buffer_to_bytes(model)
        repo.save_checkpoint(
            run.run_id,
            data,
            "sb3_state",
            episode_number=1,
            timestep=CHECKPOINT_AFTER_STEPS,
            replay_buffer=blob,
        )
        buffer_s, buffer_bytes = time.perf_counter() - start, len(blob)
    return {
        "agent_seconds": agent_s,
        "agent_bytes": len(data),
        "replay_buffer_seconds": buffer_s,
        "replay_buffer_bytes": buffer_bytes,
    }


def _callback_us_per_step(db: Any, n: int) -> float:
    """The callback's own cost per step (fake SB3 locals, real batch writer)."""
    import numpy as np

    from repositories.runs import AgentRunRepository
    from repositories.series import RewardHistoryRepository
    from trainers.rl.callbacks import LossWriter, RewardHistoryCallback

    run = AgentRunRepository(db).create({"run_name": "bench-callback", "agent_type": "ppo"})

    class Env:
        num_envs = 1

    class Model:
        num_timesteps = 0
        logger = None

        def get_env(self) -> Env:
            return Env()

    with RewardHistoryRepository(db).logger(run.run_id) as rewards:
        callback = RewardHistoryCallback(rewards, LossWriter("ppo"))
        model = Model()
        callback.init_callback(model)  # type: ignore[arg-type]
        rewards_arr, dones = np.array([0.5]), np.array([False])
        callback.locals = {"rewards": rewards_arr, "dones": dones, "infos": [{}]}
        step = callback._on_step
        start = time.perf_counter()
        for i in range(n):
            model.num_timesteps = i + 1
            callback.locals["infos"] = [{"account_value": 1e6 + i}]
            step()
        elapsed = time.perf_counter() - start
    # Subtract the loop's own bookkeeping (attribute set and a new info dict).
    start = time.perf_counter()
    for i in range(n):
        model.num_timesteps = i + 1
        callback.locals["infos"] = [{"account_value": 1e6 + i}]
    loop = time.perf_counter() - start
    return (elapsed - loop) / n * 1e6


def best_n(agent: str, market: Any, steps: int, candidates: list[int]) -> dict[str, Any]:
    """The N of ``candidates`` with the most steps per CPU second, one scouting run each."""
    rates = {}
    for n in candidates:
        run = _plain(agent, market, _config(agent, "fast", n), steps)
        rates[n] = run["steps"] / run["cpu_seconds"]
    return {"n": max(rates, key=rates.__getitem__), "steps_per_cpu_s": rates}


def bench_speed(
    agent: str, steps: int, market: Any, n_envs: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Plain training on FinRL's env against the fast one at ``n_envs``."""
    finrl, fast = _config(agent, "finrl", 1), _config(agent, "fast", n_envs)
    pairs = run_pairs(
        {
            "finrl": lambda: _plain(agent, market, finrl, steps),
            "fast": lambda: _plain(agent, market, fast, steps),
        },
        wanted=args.speed_repeats,
        max_pairs=args.max_pairs,
        max_others=args.max_others,
        quiet_wait=args.quiet_wait,
        label=f"{agent} speed",
    )
    used = clean_or_all(pairs)
    out: dict[str, Any] = {"steps": steps, "n_envs": n_envs, "pairs": pairs}
    out["pairs_clean"] = sum(p["clean"] for p in pairs)
    for arm in ("finrl", "fast"):
        out[f"{arm}_steps_per_s"] = median(p[arm]["steps_per_s"] for p in used)
        out[f"{arm}_steps_per_cpu_s"] = median(
            p[arm]["steps"] / p[arm]["cpu_seconds"] for p in used
        )
    out["speedup_wall"] = median(p["fast"]["steps_per_s"] / p["finrl"]["steps_per_s"] for p in used)
    out["speedup_cpu"] = median(
        (p["fast"]["steps"] / p["fast"]["cpu_seconds"])
        / (p["finrl"]["steps"] / p["finrl"]["cpu_seconds"])
        for p in used
    )
    return out


def bench_overhead(
    agent: str, steps: int, market: Any, n_envs: int, db: Any, args: argparse.Namespace
) -> dict[str, Any]:
    """Tracked against plain training on the fast env at ``n_envs``."""
    config = _config(agent, "fast", n_envs)
    pairs = run_pairs(
        {
            "plain": lambda: _plain(agent, market, config, steps),
            "tracked": lambda: _tracked(agent, market, config, steps, db),
        },
        wanted=args.repeats,
        max_pairs=args.max_pairs,
        max_others=args.max_others,
        quiet_wait=args.quiet_wait,
        label=f"{agent} tracking",
    )
    used = clean_or_all(pairs)
    plain, tracked = [p["plain"] for p in used], [p["tracked"] for p in used]

    def overhead_pct(key: str) -> float:
        ratios = paired_ratios([t[key] for t in tracked], [p[key] for p in plain])
        return (median(ratios) - 1) * 100

    attributed = [
        (t["callback"] + t["writer"]) / (t["seconds"] - t["callback"] - t["writer"]) * 100
        for t in tracked
    ]
    ckpt = _checkpoint_seconds(agent, market, config, db)
    done = tracked[0]["steps"]
    steps_per_s = median(t["steps"] / t["seconds"] for t in tracked)
    per_ckpt = ckpt["agent_seconds"] + ckpt["replay_buffer_seconds"]
    episode_s = market.train_days * n_envs / steps_per_s  # N episodes end together
    return {
        "steps": done,
        "n_envs": n_envs,
        "pairs": pairs,
        "pairs_clean": sum(p["clean"] for p in pairs),
        "plain_steps_per_s": median(p["steps"] / p["seconds"] for p in plain),
        "tracked_steps_per_s": steps_per_s,
        "overhead_wall_pct": overhead_pct("seconds"),
        "overhead_cpu_pct": overhead_pct("cpu_seconds"),
        "overhead_attributed_pct": median(attributed),
        "callback_us_per_step": median(t["callback"] / t["steps"] * 1e6 for t in tracked),
        "writer_us_per_step": median(t["writer"] / t["steps"] * 1e6 for t in tracked),
        "checkpoint": ckpt,
        "checkpoint_amortized_pct": per_ckpt / (EPISODES_PER_CHECKPOINT * episode_s) * 100,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--on-policy-steps", type=int, default=4096)
    parser.add_argument("--off-policy-steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="clean tracking pairs per agent")
    parser.add_argument("--speed-repeats", type=int, default=2, help="clean env pairs per agent")
    parser.add_argument("--max-pairs", type=int, default=3, help="pairs per phase at most")
    parser.add_argument("--agents", default="ppo,a2c,sac,td3,ddpg")
    parser.add_argument("--scout-n", default="8,16,32", help="N tried for PPO and A2C")
    parser.add_argument("--callback-steps", type=int, default=100_000, help="callback alone")
    add_quiet_arguments(parser, threshold=0.10, patience_s=3.0)
    add_results_arguments(parser, "rl", "PPO and SAC, a few hundred steps, one pair")
    args = parser.parse_args(argv)
    if args.quick:
        args.agents, args.on_policy_steps, args.off_policy_steps = "ppo,sac", 512, 100
        args.repeats = args.speed_repeats = args.max_pairs = 1
        args.quiet_wait, args.scout_n, args.callback_steps = 2.0, "8", 20_000

    import stable_baselines3
    import torch

    torch.set_num_threads(1)
    results = Results(
        args,
        torch=torch.__version__,
        torch_threads=str(torch.get_num_threads()),
        stable_baselines3=stable_baselines3.__version__,
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench_rl_"))
    db, market = _setup(tmp)
    results["data"] = {
        "tickers": market.tickers,
        "indicators": market.indicators,
        "state_dim": market.state_dim,
        "episode_steps": market.train_days,
    }
    results["target_overhead_pct"] = TARGET_OVERHEAD_PCT
    scout = [int(n) for n in args.scout_n.split(",")]
    speed: dict[str, Any] = {}
    overhead: dict[str, Any] = {}
    scouting: dict[str, Any] = {}
    results["speed"], results["agents"], results["scouting"] = speed, overhead, scouting
    for agent in args.agents.split(","):
        on_policy = agent in ON_POLICY
        steps = args.on_policy_steps if on_policy else args.off_policy_steps
        _plain(agent, market, _config(agent, "fast", 1), min(steps, 256))  # warm-up
        n = 1
        if on_policy:
            scouting[agent] = best_n(agent, market, steps, scout)
            n = scouting[agent]["n"]
        speed[agent] = v = bench_speed(agent, steps, market, n, args)
        print(
            f"{agent}: finrl {v['finrl_steps_per_s']:,.0f} steps/s, fast (N={n}) "
            f"{v['fast_steps_per_s']:,.0f} steps/s, x{v['speedup_wall']:.2f} wall, "
            f"x{v['speedup_cpu']:.2f} cpu",
            flush=True,
        )
        overhead[agent] = r = bench_overhead(agent, steps, market, n, db, args)
        print(
            f"{agent}: plain {r['plain_steps_per_s']:,.0f} steps/s, tracked "
            f"{r['tracked_steps_per_s']:,.0f} steps/s, wall {r['overhead_wall_pct']:+.2f}%, "
            f"cpu {r['overhead_cpu_pct']:+.2f}%, attributed {r['overhead_attributed_pct']:.2f}%",
            flush=True,
        )
    results["callback_us_per_step"] = _callback_us_per_step(db, args.callback_steps)
    db.close()
    results.write(_markdown)
    return 0


def _markdown(r: Results) -> list[str]:
    data = r["data"]
    lines = r.header("RL training: FinRL's env vs the fast env, and tracking overhead")
    lines += [
        f"{len(data['tickers'])} tickers, {len(data['indicators'])} indicators (FinRL state "
        f"{data['state_dim']}), {data['episode_steps']}-step episodes; the trainer's default "
        "configuration and parameters per algorithm. Medians over the clean pairs (all pairs "
        "where none was clean); definitions in the module docstring.",
        "",
        "Training speed, plain `learn()`, FinRL's StockTradingEnv against the fast env "
        "(A2C's rollout is 5·N steps at N envs: fewer updates per step, see the docstring):",
        "",
    ]
    rows = [
        [
            agent,
            f"{v['steps']:,}",
            str(v["n_envs"]),
            f"{v['pairs_clean']} of {len(v['pairs'])}",
            f"{v['finrl_steps_per_s']:,.0f}",
            f"{v['fast_steps_per_s']:,.0f}",
            f"{v['speedup_wall']:.2f}×",
            f"{v['finrl_steps_per_cpu_s']:,.0f}",
            f"{v['fast_steps_per_cpu_s']:,.0f}",
            f"{v['speedup_cpu']:.2f}×",
        ]
        for agent, v in r["speed"].items()
    ]
    header = ["agent", "steps", "fast N", "clean pairs", "FinRL steps/s", "fast steps/s"]
    header += ["× (wall)", "FinRL steps/CPU s", "fast steps/CPU s", "× (CPU)"]
    lines += table(header, rows)
    if r["scouting"]:
        lines += [
            "",
            "Best N (steps per CPU second, one scouting run each): "
            + "; ".join(
                f"{agent} N = {s['n']} ("
                + ", ".join(f"{n}: {rate:,.0f}" for n, rate in s["steps_per_cpu_s"].items())
                + ")"
                for agent, s in r["scouting"].items()
            )
            + ".",
        ]
    lines += ["", "Tracking overhead on the fast env (tracked vs plain, same N):", ""]
    rows = [
        [
            agent,
            f"{a['steps']:,}",
            str(a["n_envs"]),
            f"{a['pairs_clean']} of {len(a['pairs'])}",
            f"{a['plain_steps_per_s']:,.0f}",
            f"{a['tracked_steps_per_s']:,.0f}",
            f"{a['overhead_wall_pct']:+.2f}%",
            f"{a['overhead_cpu_pct']:+.2f}%",
            f"{a['overhead_attributed_pct']:.2f}%",
            f"{a['callback_us_per_step']:.1f}",
            f"{a['writer_us_per_step']:.1f}",
        ]
        for agent, a in r["agents"].items()
    ]
    header = ["agent", "steps", "N", "clean pairs", "plain steps/s", "tracked steps/s"]
    header += ["wall overhead", "CPU overhead", "attributed overhead"]
    header += ["callback µs/env-step", "writer µs/env-step"]
    lines += table(header, rows)
    rows = []
    for agent, a in r["agents"].items():
        ck = a["checkpoint"]
        rows.append(
            [
                agent,
                f"{ck['agent_seconds'] * 1000:.0f}",
                f"{ck['agent_bytes'] / 1e3:.0f}",
                f"{ck['replay_buffer_seconds'] * 1000:.0f}" if ck["replay_buffer_bytes"] else "–",
                f"{ck['replay_buffer_bytes'] / 1e6:.2f}" if ck["replay_buffer_bytes"] else "–",
                f"{a['checkpoint_amortized_pct']:.3f}%",
            ]
        )
    met = [a for a, v in r["agents"].items() if v["overhead_attributed_pct"] <= 3.0]
    lines += [
        "",
        f"Checkpoint save after {CHECKPOINT_AFTER_STEPS:,} steps (replay buffer compressed), "
        "amortized over "
        f"{EPISODES_PER_CHECKPOINT} episodes at the tracked speed:",
        "",
        *table(
            ["agent", "agent ms", "agent kB", "replay buffer ms", "replay buffer MB", "amortized"],
            rows,
        ),
        "",
        *table(
            ["callback alone µs/step", "target attributed overhead", "met by"],
            [
                [
                    f"{r['callback_us_per_step']:.2f}",
                    f"≤ {r['target_overhead_pct']:g}%",
                    ", ".join(met) or "none",
                ]
            ],
            numeric_from=0,
        ),
    ]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
