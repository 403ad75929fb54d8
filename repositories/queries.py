"""The seed document's queries, verbatim, and their current-row variants.

The verbatim SQL reads ``training_runs`` / ``agent_training_runs`` without FINAL.
That is still exact here because a run reaches ``completed`` once and never
changes after it (the lifecycle refuses it), so no stale row of a completed run
carries that status. The ``_FINAL`` variants are what the repositories use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from repositories.errors import InvalidInputError

if TYPE_CHECKING:
    from suho_models.db import Database

COMPARE_MODEL_PERFORMANCE = """SELECT
    run_name,
    model_type,
    final_test_accuracy,
    final_f1_score
FROM training_runs
WHERE status = 'completed'
ORDER BY final_test_accuracy DESC
LIMIT 10;"""

BEST_RL_AGENTS = """SELECT
    run_name,
    agent_type,
    final_sharpe_ratio,
    final_total_return
FROM agent_training_runs  
WHERE status = 'completed'
ORDER BY final_sharpe_ratio DESC
LIMIT 10;"""

COMPARE_MODEL_PERFORMANCE_FINAL = """SELECT run_id, run_name, model_type, final_test_accuracy, final_f1_score
FROM training_runs FINAL
WHERE status = 'completed'
ORDER BY final_test_accuracy DESC, run_id
LIMIT %(limit)s"""

BEST_RL_AGENTS_FINAL = """SELECT run_id, run_name, agent_type, final_sharpe_ratio, final_total_return
FROM agent_training_runs FINAL
WHERE status = 'completed'
ORDER BY final_sharpe_ratio DESC, run_id
LIMIT %(limit)s"""

SEED_QUERIES = {
    "compare_model_performance": COMPARE_MODEL_PERFORMANCE,
    "best_rl_agents": BEST_RL_AGENTS,
}


def seed_query(db: Database, name: str) -> list[dict[str, Any]]:
    """Run one of :data:`SEED_QUERIES` as the seed wrote it (the demo prints these)."""
    if name not in SEED_QUERIES:
        raise InvalidInputError(f"name: expected one of {', '.join(SEED_QUERIES)} (got {name!r})")
    return db.execute_mappings(SEED_QUERIES[name])


def table_row_counts(db: Database) -> dict[str, int]:
    """Stored rows per table, row versions not yet merged included (``suho db status``)."""
    from suho_models import TABLE_NAMES

    return {name: int(db.scalar(f"SELECT count() FROM `{name}`")) for name in TABLE_NAMES}
