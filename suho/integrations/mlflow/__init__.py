"""A faithful, idempotent copy of our runs in an MLflow tracking server.

Our tables stay the source of truth; MLflow gets a mirror that can be refreshed at
any time (``suho mlflow export``), also while a run trains (:class:`LiveMirror`,
``suho train ... --mlflow-uri``). Everything is read through
:class:`~repositories.tracking.RunTrackingService` and the repositories.

Why it works the way it does:

* **Found by tag, never duplicated.** An MLflow run carries ``suho.run_id``; an
  export searches for it first and updates that run in place. The tag is given to
  ``create_run`` itself, so no run ever exists without it. Trials are child runs
  found by ``suho.parent_run_id`` and ``suho.trial_number``; model versions by
  their ``suho.checkpoint_id`` tag.
* **Only new metric points.** For each metric key MLflow keeps its latest point,
  the one with the highest step; we send only points past it. Points go out in
  step order, in ``log_batch`` calls of at most 1,000, so a crash between two
  calls leaves every key with a prefix of its series, and the next export
  continues where it stopped. A point re-sent anyway (a retried request whose
  answer was lost) carries the same step, value and timestamp (``recorded_at``),
  which MLflow's SQL store recognizes and does not store twice.
* **No holes while running.** Series are numbered without gaps (iterations,
  episodes, timesteps). While a run is running, a series is sent only up to its
  first gap, in case a batch of our writer lands after a later one (a replayed
  spool file); a finished run sends everything.
* **Params are immutable in MLflow.** The run configuration is flattened with
  ``.`` between keys (lists and scalars as JSON text, strings as they are). Keys
  keep letters, digits and ``_ - . : space``; any other character becomes ``_``,
  a leading ``.`` or ``/`` gets a ``_`` in front, and a key over 250 characters is
  cut and ends with ``~`` and 8 hex digits of its SHA-256. Values longer than
  :data:`PARAM_VALUE_MAX` (500, the limit of older servers and of Databricks)
  are cut to 497 characters plus ``...``; the full configuration is always
  uploaded as the artifact ``suho/config.json``. The tuned hyperparameters (the
  best complete trial's, as ``tuned.<name>``) are logged once the run has ended,
  since the best trial can still change while it runs. A value that changed
  after it was logged (a resumed RL run's new ``timesteps``) cannot be changed in
  MLflow: it is skipped with a warning, and ``suho/config.json`` has the new one.
* **Checkpoints** are uploaded as ``checkpoints/<kind>-<step>-<id>.<ext>`` after
  ``load_checkpoint`` verified their SHA-256 (a mismatch raises, nothing is sent).
  A deployed (or once deployed, now archived) checkpoint becomes a version of the
  registered model ``<prefix>-<model name>`` (supervised) or
  ``<prefix>-<agent type>-agent`` (RL), with the alias ``production`` or
  ``staging`` while it holds that stage, when the server has a registry.

Metric keys: supervised runs log the ``training_metrics`` columns by iteration;
RL runs log ``episode_reward``, ``episode_sharpe_ratio``, ``episode_account_value``,
``episode_policy_loss``, ``episode_value_loss`` and ``episode_end_timestep`` by
episode (from each episode's last step), and with ``all_steps`` also
``step_reward``, ``step_cumulative_reward``, ``step_account_value``,
``step_policy_loss`` and ``step_value_loss`` by timestep. The ``final_*`` columns
(and an agent's ``total_timesteps``/``total_episodes``) are logged at step 0 when
the run has ended.

Limits: a resumed run that re-trains iterations MLflow already holds keeps
MLflow's earlier points for them (MLflow cannot delete points); two exporters
writing the same run at the same moment could each create it once.
"""

from suho.integrations.mlflow.exporter import (
    ExportResult,
    MlflowExporter,
    checkpoint_artifact_name,
)
from suho.integrations.mlflow.live import LiveMirror
from suho.integrations.mlflow.names import (
    CONFIG_ARTIFACT,
    PARAM_VALUE_MAX,
    RUN_ID_TAG,
    MlflowUnavailableError,
    flatten,
    import_mlflow,
    mlflow_key,
    param_value,
)
from suho.kinds import EPISODE_SERIES, STEP_SERIES, SUPERVISED_SERIES

__all__ = [
    "CONFIG_ARTIFACT",
    "RUN_ID_TAG",
    "EPISODE_SERIES",
    "STEP_SERIES",
    "SUPERVISED_SERIES",
    "ExportResult",
    "LiveMirror",
    "MlflowExporter",
    "MlflowUnavailableError",
    "PARAM_VALUE_MAX",
    "checkpoint_artifact_name",
    "flatten",
    "import_mlflow",
    "mlflow_key",
    "param_value",
]
