"""Training speed of each RL algorithm with our tracking vs the same training without it.

For every algorithm (PPO, A2C, SAC, TD3, DDPG with the trainer's FinRL defaults,
MLP policies on CPU, ``torch.set_num_threads(1)``) the same training (same
seed, same env, same steps) runs twice, side by side in one process:

* **plain**: ``model.learn(N)`` on the reward-wrapped FinRL env, SB3's default
  logger, no callback;
* **tracked**: what ``RLTrainer`` adds: ``RewardHistoryCallback`` writing one
  ``reward_history`` row per step through the batch writer (embedded chDB), the
  ``LossWriter`` logger, ``log_interval=1``; timed until the writer's
  ``close()`` returned with every row inserted (checked with ``count() FINAL``).

Plain and tracked run as adjacent pairs in alternating order (ABBA), each pair
after waiting for a quiet machine, until ``--repeats`` pairs per algorithm are clean
(other processes used at most ``--max-others`` of the CPUs) or ``--max-pairs`` ran.
Figures (medians over the clean pairs):

* wall / CPU overhead: tracked over plain wall time and process CPU time (all
  threads, chDB's included), median of the pairs' ratios;
* attributed overhead: time inside our code over the rest of the tracked run: the
  callback's wall time plus the CPU time of the batch writer's sealing and inserts
  (in its background thread or at close). chDB's work on its own threads is only in
  the CPU column.

Checkpoints are measured on their own (one save: SB3 zip and, off-policy, the
replay buffer) and amortized over the default cadence of 100 episodes. Also
reported: the callback's cost per step in isolation.

Usage: ``python bench/bench_rl.py [--on-policy-steps N] [--off-policy-steps M]
[--repeats R] [--agents ppo,a2c,...] [--quick] [--results-dir DIR]``. Results go
to ``bench/results/rl.json`` and ``rl.md`` (``--quick``: PPO and SAC, a few hundred
steps, one pair, under 2 minutes; writes nothing unless ``--results-dir`` is given).
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


def _setup(tmp: Path) -> tuple[Any, Any, Any]:
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
    config = RLConfig()
    return db, config, load_market(config, db)


def _model(agent: str, market: Any, config: Any, steps: int) -> Any:
    from trainers.rl.agents import build_model
    from trainers.rl.environment import make_vec_env

    env = make_vec_env(market.train, market, config)
    return build_model(agent, env, {}, timesteps=steps, seed=0)


def _plain(agent: str, market: Any, config: Any, steps: int) -> dict[str, float]:
    model = _model(agent, market, config, steps)
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=steps)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert model.num_timesteps >= steps
    return {"seconds": wall, "cpu_seconds": cpu}


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
        "callback": in_callback.seconds,
        "writer": in_writer.seconds,
    }


def _checkpoint_seconds(agent: str, market: Any, config: Any, db: Any) -> dict[str, float]:
    """One save, as RLTrainer does it at a checkpoint (after 1,000 steps of training)."""
    from repositories.checkpoints import AgentCheckpointRepository
    from repositories.runs import AgentRunRepository
    from trainers.rl.agents import OFF_POLICY, model_to_bytes, replay_buffer_to_bytes

    model = _model(agent, market, config, 1000)
    model.learn(total_timesteps=1000)
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
            run.run_id, data, "sb3_state", episode_number=1, timestep=1000, replay_buffer=blob
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

    class Model:
        num_timesteps = 0

    with RewardHistoryRepository(db).logger(run.run_id) as rewards:
        callback = RewardHistoryCallback(rewards, LossWriter("ppo"))
        model = Model()
        callback.model = model  # type: ignore[assignment]
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


def bench_agent(
    agent: str, steps: int, market: Any, config: Any, db: Any, args: argparse.Namespace
) -> dict[str, Any]:
    _plain(agent, market, config, min(steps, 256))  # warm-up: imports, allocator
    pairs = run_pairs(
        {
            "plain": lambda: _plain(agent, market, config, steps),
            "tracked": lambda: _tracked(agent, market, config, steps, db),
        },
        wanted=args.repeats,
        max_pairs=args.max_pairs,
        max_others=args.max_others,
        quiet_wait=args.quiet_wait,
        label=agent,
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
    steps_per_s = steps / median(t["seconds"] for t in tracked)
    per_ckpt = ckpt["agent_seconds"] + ckpt["replay_buffer_seconds"]
    episode_s = market.train_days / steps_per_s
    return {
        "steps": steps,
        "pairs": pairs,
        "pairs_clean": sum(p["clean"] for p in pairs),
        "plain_steps_per_s": steps / median(p["seconds"] for p in plain),
        "tracked_steps_per_s": steps_per_s,
        "overhead_wall_pct": overhead_pct("seconds"),
        "overhead_cpu_pct": overhead_pct("cpu_seconds"),
        "overhead_attributed_pct": median(attributed),
        "callback_us_per_step": median(t["callback"] / steps * 1e6 for t in tracked),
        "writer_us_per_step": median(t["writer"] / steps * 1e6 for t in tracked),
        "checkpoint": ckpt,
        "checkpoint_amortized_pct": per_ckpt / (EPISODES_PER_CHECKPOINT * episode_s) * 100,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--on-policy-steps", type=int, default=4096)
    parser.add_argument("--off-policy-steps", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=4, help="clean pairs per algorithm")
    parser.add_argument("--max-pairs", type=int, default=8, help="pairs per algorithm at most")
    parser.add_argument("--agents", default="ppo,a2c,sac,td3,ddpg")
    parser.add_argument("--callback-steps", type=int, default=200_000, help="callback alone")
    add_quiet_arguments(parser, threshold=0.10, patience_s=45.0)
    add_results_arguments(parser, "rl", "PPO and SAC, a few hundred steps, one pair")
    args = parser.parse_args(argv)
    if args.quick:
        args.agents, args.on_policy_steps, args.off_policy_steps = "ppo,sac", 256, 120
        args.repeats, args.max_pairs, args.quiet_wait = 1, 1, 5.0
        args.callback_steps = 20_000

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
    db, config, market = _setup(tmp)
    results["data"] = {
        "tickers": market.tickers,
        "indicators": market.indicators,
        "state_dim": market.state_dim,
        "episode_steps": market.train_days,
    }
    results["target_overhead_pct"] = TARGET_OVERHEAD_PCT
    agents = results["agents"] = {}
    for agent in args.agents.split(","):
        steps = args.on_policy_steps if agent in ("ppo", "a2c") else args.off_policy_steps
        agents[agent] = r = bench_agent(agent, steps, market, config, db, args)
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
    lines = r.header("RL training: tracked vs plain")
    lines += [
        f"FinRL StockTradingEnv, {len(data['tickers'])} tickers, {len(data['indicators'])} "
        f"indicators (state {data['state_dim']}), {data['episode_steps']}-step episodes; the "
        "trainer's defaults per algorithm. Figures are medians over the clean pairs (all "
        "pairs where none was clean); definitions in the module docstring.",
        "",
    ]
    rows = [
        [
            agent,
            f"{a['steps']:,}",
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
    header = ["agent", "steps", "clean pairs", "plain steps/s", "tracked steps/s"]
    header += ["wall overhead", "CPU overhead", "attributed overhead"]
    header += ["callback µs/step", "writer µs/step"]
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
    lines += [
        "",
        "Checkpoint save after 1,000 steps (replay buffer compressed), amortized over "
        f"{EPISODES_PER_CHECKPOINT} episodes:",
        "",
        *table(
            ["agent", "agent ms", "agent kB", "replay buffer ms", "replay buffer MB", "amortized"],
            rows,
        ),
        "",
        *table(
            ["callback alone µs/step", "target attributed overhead"],
            [[f"{r['callback_us_per_step']:.2f}", f"≤ {r['target_overhead_pct']:g}%"]],
            numeric_from=0,
        ),
    ]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
