"""The end-of-run scores of a table run: its synthetic rows against the rows held out of training."""
from __future__ import annotations

import math
from typing import Any


def table_metrics(artifact: Any, data: Any, seed: int = 0) -> dict[str, Any]:
    """Column shapes, column pair trends, their mean (SDMetrics' quality) and the detection AUC of as
    many synthetic rows as were held out, against those rows; {} when the data holds none out."""
    held = getattr(data, "heldout", None)
    if held is None or not len(held):
        return {}
    from ganforge.tabular.metrics import evaluate_table

    synth = artifact.sample(len(held), seed=seed)
    scores = evaluate_table(held, synth, discrete_columns=getattr(data, "discrete_columns", None), seed=seed)
    # A score SDMetrics cannot compute (no pair above its thresholds) is NaN: null in JSON.
    out: dict[str, Any] = {k: (float(scores[k]) if math.isfinite(scores[k]) else None)
                           for k in ("column_shapes", "column_pair_trends", "quality", "detection_auc")}
    out["protocol"] = {"reference": data.heldout_source, "synthetic_rows": len(synth), "seed": seed,
                       "scores": "SDMetrics' Column Shapes / Column Pair Trends; logistic-regression detection AUC"}
    return out
