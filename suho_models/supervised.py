"""The four supervised-learning tables (seed tables 1-4)."""

from __future__ import annotations

import uuid

from suho_models.base import (
    RUNS_LAYOUT,
    UUID,
    Base,
    Float64,
    FloatList,
    Label,
    NullableFloat,
    NullableTimestamp,
    Str,
    StrList,
    Timestamp,
    UInt32,
    UInt64,
    Version,
    column,
    current_row_engine,
    detailed_series_engine,
    retention_ttl,
    run_id_bloom,
)


class TrainingRun(Base):
    """One supervised experiment; a new row per status change, read FINAL."""

    __tablename__ = "training_runs"
    __table_args__ = (
        current_row_engine(**RUNS_LAYOUT),
        run_id_bloom(),
        {"comment": "Supervised ML experiment tracking: one current row per run_id"},
    )

    run_id = column(UUID, "Run identifier", primary_key=True, default=uuid.uuid4)
    run_name = column(Str, "Human-readable run name")
    model_type = column(Label, "Model library: xgboost, lightgbm, catboost, ...")
    task_type = column(Label, "classification or regression")
    status = column(Label, "pending, running, completed, failed or cancelled")
    target_variable = column(Str, "Target column of ml_features")
    features_used = column(StrList, "Feature columns after selection, in model order")
    train_start = column(NullableTimestamp, "First timestamp of the training split")
    train_end = column(NullableTimestamp, "Last timestamp of the training split")
    val_start = column(NullableTimestamp, "First timestamp of the validation split")
    val_end = column(NullableTimestamp, "Last timestamp of the validation split")
    test_start = column(NullableTimestamp, "First timestamp of the test split")
    test_end = column(NullableTimestamp, "Last timestamp of the test split")
    train_ratio = column(Float64, "Share of timestamps in the training split")
    val_ratio = column(Float64, "Share of timestamps in the validation split")
    test_ratio = column(Float64, "Share of timestamps in the test split")
    train_rows = column(UInt64, "Rows in the training split")
    val_rows = column(UInt64, "Rows in the validation split")
    test_rows = column(UInt64, "Rows in the test split")
    final_train_loss = column(NullableFloat, "Loss on the training split at the end")
    final_val_loss = column(NullableFloat, "Loss on the validation split at the end")
    final_test_loss = column(NullableFloat, "Loss on the test split at the end")
    final_train_accuracy = column(NullableFloat, "Accuracy on the training split")
    final_val_accuracy = column(NullableFloat, "Accuracy on the validation split")
    final_test_accuracy = column(NullableFloat, "Accuracy on the test split")
    final_f1_score = column(NullableFloat, "F1 on the test split (classification)")
    final_auc_score = column(NullableFloat, "ROC AUC on the test split (classification)")
    final_precision = column(NullableFloat, "Precision on the test split (classification)")
    final_recall = column(NullableFloat, "Recall on the test split (classification)")
    final_rmse = column(NullableFloat, "RMSE on the test split (regression)")
    final_mae = column(NullableFloat, "MAE on the test split (regression)")
    final_r2 = column(NullableFloat, "R squared on the test split (regression)")
    final_direction_accuracy = column(NullableFloat, "Sign hit rate on the test split (regression)")
    config_json = column(Str, "Full trainer configuration as JSON, for reproduction and resume")
    started_at = column(NullableTimestamp, "When training started")
    completed_at = column(NullableTimestamp, "When the run reached a terminal status")
    duration_seconds = column(NullableFloat, "Wall time from start to terminal status")
    error_message = column(Str, "Error of a failed run, empty otherwise")
    git_commit_hash = column(Str, "Commit of the code that trained, empty outside git")
    created_at = column(Timestamp, "When the run was created")
    updated_at = column(Version, "Row version: the newest row per run_id is current")
    heartbeat_at = column(
        NullableTimestamp, "Last sign of life of the training process; stale while running: it died"
    )


class ModelCheckpoint(Base):
    """A saved model; deployment changes are new rows, read FINAL."""

    __tablename__ = "model_checkpoints"
    __table_args__ = (
        current_row_engine(order_by=("run_id", "checkpoint_id")),
        {"comment": "Saved supervised model binaries (base64 inline, or object-store URI)"},
    )

    checkpoint_id = column(UUID, "Checkpoint identifier", primary_key=True, default=uuid.uuid4)
    run_id = column(UUID, "Run that produced the model")
    model_name = column(Str, "Deployment name: one production model per name")
    model_type = column(Label, "Model library")
    iteration = column(UInt32, "Boosting iteration / epoch of the checkpoint")
    checkpoint_kind = column(Label, "intermediate, best or final")
    model_format = column(Label, "Serialization: native format, joblib, pickle or onnx")
    model_binary = column(Str, "Base64 model bytes when stored inline", codec="LZ4")
    size_bytes = column(UInt64, "Size of the raw model bytes")
    sha256 = column(Str, "SHA-256 of the raw model bytes, checked before loading")
    storage = column(Label, "inline, local or s3")
    storage_uri = column(Str, "Object-store URI when not inline")
    train_loss = column(NullableFloat, "Training loss at the checkpoint")
    val_loss = column(NullableFloat, "Validation loss at the checkpoint")
    val_accuracy = column(NullableFloat, "Validation accuracy at the checkpoint")
    metrics_json = column(Str, "All metrics at the checkpoint as JSON")
    deployment_status = column(Label, "not_deployed, staging, production or archived")
    deployed_at = column(NullableTimestamp, "When it last entered staging or production")
    created_at = column(Timestamp, "When the checkpoint was saved")
    updated_at = column(Version, "Row version: the newest row per checkpoint is current")
    signature = column(
        Str, "HMAC-SHA256 of the raw bytes with the checkpoint key, empty if unsigned"
    )


class TrainingMetric(Base):
    """Per-iteration metrics: the high-volume table, kept for the retention period."""

    __tablename__ = "training_metrics"
    __table_args__ = (
        detailed_series_engine(order_by=("run_id", "iteration_number"), ttl=retention_ttl()),
        {"comment": "Per-iteration training metrics, detailed rows expire by TTL"},
    )

    run_id = column(UUID, "Run the metric belongs to", primary_key=True)
    iteration_number = column(
        UInt32, "Boosting iteration / epoch, from 1", primary_key=True, codec="Delta, ZSTD(1)"
    )
    train_loss = column(NullableFloat, "Loss on the training data (NaN/inf kept)")
    val_loss = column(NullableFloat, "Loss on the validation data")
    train_accuracy = column(NullableFloat, "Accuracy on the training data")
    val_accuracy = column(NullableFloat, "Accuracy on the validation data")
    learning_rate = column(NullableFloat, "Learning rate in effect")
    gradient_norm = column(NullableFloat, "Gradient norm, NULL where the library has none")
    iteration_duration_ms = column(Float64, "Wall time of the iteration in milliseconds")
    recorded_at = column(Timestamp, "When it was logged: drives TTL and row version")


class HyperparameterTrial(Base):
    """One tuning trial; re-logging a trial number (resumed study) replaces it."""

    __tablename__ = "hyperparameters_log"
    __table_args__ = (
        current_row_engine(order_by=("run_id", "trial_number"), version="recorded_at"),
        {"comment": "Hyperparameter tuning trials of supervised runs, kept forever"},
    )

    trial_id = column(UUID, "Trial identifier", default=uuid.uuid4)
    run_id = column(UUID, "Run that owns the study", primary_key=True)
    study_name = column(Str, "Optuna study name")
    trial_number = column(UInt32, "Trial number within the study, from 0", primary_key=True)
    hyperparameters = column(Str, "Parameters as a JSON object")
    objective_value = column(NullableFloat, "Objective value, NULL for pruned/failed trials")
    scores = column(FloatList, "Per-fold cross-validation scores")
    tuning_method = column(Label, "optuna, grid_search or random_search")
    state = column(Label, "complete, pruned or failed")
    duration_seconds = column(Float64, "Wall time of the trial")
    recorded_at = column(Timestamp, "When the trial finished")
    worker_host = column(Label, "Host of the tuning worker that ran the trial", default="")
    worker_pid = column(UInt32, "Process id of that worker", default=0)
