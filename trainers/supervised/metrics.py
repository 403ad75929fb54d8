"""The evaluation metrics of supervised runs, one definition each.

Classification: accuracy, log loss, F1, ROC AUC, precision, recall (positive
class 1, threshold 0.5). Regression: RMSE, MAE, R², and direction accuracy (the
share of rows where the predicted and the true return have the same sign).
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    y_true = np.asarray(y_true).astype(int)
    proba = np.clip(np.asarray(proba, dtype=float), 1e-15, 1 - 1e-15)
    pred = (proba >= 0.5).astype(int)
    both_classes = len(np.unique(y_true)) == 2
    return {
        "accuracy": float(skm.accuracy_score(y_true, pred)),
        "loss": float(skm.log_loss(y_true, proba, labels=[0, 1])),
        "f1": float(skm.f1_score(y_true, pred, zero_division=0)),
        "auc": float(skm.roc_auc_score(y_true, proba)) if both_classes else float("nan"),
        "precision": float(skm.precision_score(y_true, pred, zero_division=0)),
        "recall": float(skm.recall_score(y_true, pred, zero_division=0)),
    }


def regression_metrics(y_true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    y_true = np.asarray(y_true, dtype=float)
    pred = np.asarray(pred, dtype=float)
    rmse = float(np.sqrt(skm.mean_squared_error(y_true, pred)))
    return {
        "loss": rmse,
        "rmse": rmse,
        "mae": float(skm.mean_absolute_error(y_true, pred)),
        "r2": float(skm.r2_score(y_true, pred)),
        "direction_accuracy": float(np.mean(np.sign(pred) == np.sign(y_true))),
    }


def evaluate(task: str, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The metrics of ``task`` ("classification" or "regression") for predictions."""
    if task == "classification":
        return classification_metrics(y, pred)
    return regression_metrics(y, pred)
