"""ganforge.metrics.table: agreement with SDMetrics' own numbers, and how the scores behave.

The tables are small and built here with a seeded rng: a float column, an int column correlated with it,
an independent float with missing values, a categorical with a NaN category, a boolean and a datetime with a
NaT, so that every metric, every pair kind and the report's thresholds (pairs in and out) are exercised.
"""
from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
import pytest

from ganforge.metrics.table import (
    column_kinds,
    column_pair_trends,
    column_shapes,
    detection_auc,
    detection_score,
    evaluate_table,
    ml_efficacy,
    quality_score,
)


def make_table(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    x = rng.normal(shift, 1.0, n)
    y = np.round(3 * x + rng.normal(0, 1, n) + 10).astype(int)
    z = rng.exponential(2.0, n)
    z[rng.random(n) < 0.1] = np.nan
    cat = np.where(x + rng.normal(0, 0.5, n) > 0.3, "hi", np.where(rng.random(n) < 0.5, "lo", "mid")).astype(object)
    cat[rng.random(n) < 0.05] = np.nan
    flag = x + rng.normal(0, 1, n) > 0
    seconds = np.round((30 * x + rng.normal(0, 10, n)) * 86400)
    when = pd.Series(pd.Timestamp("2020-01-01") + pd.to_timedelta(seconds, unit="s"))
    when[rng.random(n) < 0.03] = pd.NaT
    return pd.DataFrame({"x": x, "y": y, "z": z, "cat": cat, "flag": flag, "when": when})


@pytest.fixture(scope="module")
def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    return make_table(rng, 800), make_table(rng, 700, shift=0.3)


def metadata(kinds: dict[str, str]) -> dict:
    return {"columns": {name: {"sdtype": kind} for name, kind in kinds.items()}}


def sdmetrics_report(real: pd.DataFrame, synth: pd.DataFrame, kinds: dict[str, str], thresholds: bool = True):
    pytest.importorskip("sdmetrics")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the single-table QualityReport announces its deprecation
        from sdmetrics.reports.single_table import QualityReport

        report = QualityReport()
        if not thresholds:
            report.real_correlation_threshold = report.real_association_threshold = 0
        report.generate(real, synth, metadata(kinds), verbose=False)
    return report


def assert_close(ours: float, theirs: float) -> None:
    assert (np.isnan(ours) and np.isnan(theirs)) or abs(ours - theirs) < 1e-6, (ours, theirs)


def assert_agrees_with_report(real: pd.DataFrame, synth: pd.DataFrame, kinds: dict[str, str],
                              thresholds: bool = True) -> None:
    report = sdmetrics_report(real, synth, kinds, thresholds)
    kw = {} if thresholds else {"real_correlation_threshold": 0, "real_association_threshold": 0}
    shapes, trends = column_shapes(real, synth, kinds), column_pair_trends(real, synth, kinds, **kw)
    properties = report.get_properties().set_index("Property")["Score"]
    assert_close(shapes["score"], properties["Column Shapes"])
    assert_close(trends["score"], properties["Column Pair Trends"])
    if thresholds:
        assert_close(quality_score(real, synth, kinds), report.get_score())
    details = report.get_details("Column Shapes")
    assert list(details["Column"]) == list(shapes["columns"])
    for name, score in zip(details["Column"], details["Score"], strict=True):
        assert_close(shapes["columns"][name], score)
    details = report.get_details("Column Pair Trends")
    assert [f"{a}|{b}" for a, b in zip(details["Column 1"], details["Column 2"], strict=True)] == list(trends["pairs"])
    for _, row in details.iterrows():
        key = f"{row['Column 1']}|{row['Column 2']}"
        assert trends["metrics"][key] == row["Metric"]
        assert_close(trends["pairs"][key], row["Score"])
        if thresholds:  # the real side's correlation / association is what the thresholds read
            real_side = row["Real Correlation" if row["Metric"] == "CorrelationSimilarity" else "Real Association"]
            assert_close(trends["real"][key], real_side)


def test_column_kinds():
    df = pd.DataFrame({"f": [0.5, 1.5], "i": [1, 2], "s": ["a", np.nan], "b": [True, False],
                       "c": pd.Categorical(["u", "v"]), "t": pd.to_datetime(["2020-01-01", "2021-01-01"])})
    assert column_kinds(df) == {"f": "numerical", "i": "numerical", "s": "categorical", "b": "categorical",
                                "c": "categorical", "t": "datetime"}
    assert column_kinds(df, discrete_columns=["i"])["i"] == "categorical"
    with pytest.raises(ValueError, match="nope"):
        column_kinds(df, discrete_columns=["nope"])


def test_quality_report_agreement(tables):
    real, synth = tables
    kinds = column_kinds(real)
    trends = column_pair_trends(real, synth, kinds)
    scored = [k for k, v in trends["pairs"].items() if not np.isnan(v)]
    assert 0 < len(scored) < len(trends["pairs"])  # the thresholds keep some pairs and drop others
    assert_agrees_with_report(real, synth, kinds)


def test_quality_report_agreement_without_thresholds(tables):
    real, synth = tables
    assert_agrees_with_report(real, synth, column_kinds(real), thresholds=False)
    trends = column_pair_trends(real, synth, column_kinds(real), real_correlation_threshold=0,
                                real_association_threshold=0)
    assert trends["pairs"] == trends["similarity"]


def test_quality_report_agreement_edge_cases():
    """A constant column (CorrelationSimilarity refuses it), a category dtype with an unused category, a
    synthetic-only category (TVComplement's 1e-6 regularisation), a nullable int column with missing values, a
    column with a single category in the real table (no Cramer's V)."""
    rng = np.random.default_rng(1)
    n = 300
    a = rng.normal(0, 1, n)
    ints = pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(0, 9, n)), dtype="Int64")
    real = pd.DataFrame({"a": a, "b": 2 * a + rng.normal(0, 0.5, n), "const": np.full(n, 4.0),
                         "kat": pd.Categorical(np.where(a > 0, "p", "q")), "one": ["only"] * n, "ints": ints})
    b = rng.normal(0.2, 1, n)
    synth = pd.DataFrame({"a": b, "b": 2 * b + rng.normal(0, 1, n), "const": np.full(n, 4.0),
                          "kat": pd.Categorical(rng.choice(["p", "q", "r"], n), categories=["p", "q", "r", "unused"]),
                          "one": rng.choice(["only", "other"], n),
                          "ints": pd.array(rng.integers(0, 9, n), dtype="Int64")})
    kinds = column_kinds(real)
    assert kinds["ints"] == "numerical" and kinds["kat"] == "categorical"
    assert np.isnan(column_pair_trends(real, synth, kinds)["pairs"]["a|const"])
    assert_agrees_with_report(real, synth, kinds)
    assert_agrees_with_report(real, synth, kinds, thresholds=False)


def test_single_metrics_agree_with_sdmetrics(tables):
    pytest.importorskip("sdmetrics")
    from sdmetrics.column_pairs import ContingencySimilarity, CorrelationSimilarity
    from sdmetrics.single_column import KSComplement, TVComplement

    real, synth = tables
    kinds = column_kinds(real)
    shapes = column_shapes(real, synth, kinds)
    for name in ("x", "y", "z", "when"):
        assert_close(shapes["columns"][name], KSComplement.compute(real[name], synth[name]))
    for name in ("cat", "flag"):
        assert_close(shapes["columns"][name], TVComplement.compute(real[name], synth[name]))
    trends = column_pair_trends(real, synth, kinds, real_correlation_threshold=0, real_association_threshold=0)
    assert_close(trends["pairs"]["x|z"], CorrelationSimilarity.compute(real[["x", "z"]], synth[["x", "z"]]))
    assert_close(trends["pairs"]["x|when"], CorrelationSimilarity.compute(real[["x", "when"]], synth[["x", "when"]]))
    assert_close(trends["pairs"]["cat|flag"],
                 ContingencySimilarity.compute(real[["cat", "flag"]], synth[["cat", "flag"]]))

    def binned(df: pd.DataFrame) -> pd.DataFrame:  # as the QualityReport bins: each table on its own edges
        return df.assign(y=np.digitize(df["y"], np.histogram_bin_edges(df["y"].dropna())))

    assert_close(trends["pairs"]["y|cat"], ContingencySimilarity.compute(binned(real)[["y", "cat"]],
                                                                          binned(synth)[["y", "cat"]]))


def test_identical_tables_score_one(tables):
    real, _ = tables
    kinds = column_kinds(real)
    shapes, trends = column_shapes(real, real.copy(), kinds), column_pair_trends(real, real.copy(), kinds)
    assert shapes["score"] == pytest.approx(1.0) and trends["score"] == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in trends["similarity"].values())
    assert quality_score(real, real.copy(), kinds) == pytest.approx(1.0)


def test_shuffled_or_shifted_columns_score_lower(tables):
    real, _ = tables
    kinds = column_kinds(real)
    rng = np.random.default_rng(2)
    shuffled = real.copy()
    shuffled["y"] = rng.permutation(shuffled["y"].to_numpy())  # same marginal, broken dependence
    assert column_shapes(real, shuffled, kinds)["score"] == pytest.approx(1.0)
    assert column_pair_trends(real, shuffled, kinds)["score"] < 0.9
    shifted = real.assign(x=real["x"] + 1.0, z=real["z"] * 2.0)
    shapes = column_shapes(real, shifted, kinds)
    assert shapes["columns"]["x"] < 0.7 and shapes["columns"]["z"] < 0.9 and shapes["columns"]["y"] == 1.0
    assert quality_score(real, shifted, kinds) < 1.0


def test_detection_auc():
    rng = np.random.default_rng(3)
    sample = make_table(rng, 2000)
    assert abs(detection_auc(sample.iloc[:1000], sample.iloc[1000:], seed=0) - 0.5) < 0.1
    different = make_table(rng, 1000, shift=2.0).assign(cat="mid")
    assert detection_auc(sample.iloc[:1000], different, seed=0) > 0.9
    assert detection_auc(sample.iloc[:1000], different, seed=0, max_rows=200) > 0.9
    assert detection_score(0.5) == 1.0 and detection_score(0.3) == 1.0 and detection_score(1.0) == 0.0
    assert detection_score([0.4, 0.7]) == pytest.approx(0.8)  # SDMetrics clips each fold before averaging


def classification_table(rng: np.random.Generator, n: int) -> pd.DataFrame:
    x1, x2 = rng.normal(0, 1, (2, n))
    color = rng.choice(["red", "green", "blue"], n)
    logit = 2 * x1 - x2 + (color == "red") * 1.5 - 2.0
    label = np.where(rng.random(n) < 1 / (1 + np.exp(-3 * logit)), ">50K", "<=50K")
    return pd.DataFrame({"x1": x1, "x2": x2 * 1000 + 5000, "color": color, "label": label})


def test_ml_efficacy():
    rng = np.random.default_rng(4)
    synth, test = classification_table(rng, 2000), classification_table(rng, 1000)
    out = ml_efficacy(synth, test, "label", seed=0)
    assert out["average"] == "binary" and out["positive"] == ">50K"  # the rarer real class, SDGym's code 1
    assert set(out["models"]) == {"DecisionTreeClassifier", "AdaBoostClassifier", "LogisticRegression",
                                  "MLPClassifier"}
    p = (test["label"] == ">50K").mean()
    constant_f1 = 2 * p / (1 + p)  # predicting the positive class everywhere
    assert out["f1"] > constant_f1 + 0.25 and min(out["models"].values()) > constant_f1
    assert ml_efficacy(synth, test, "label", seed=0) == out  # seeded

    one_class = synth.assign(label="<=50K")
    assert ml_efficacy(one_class, test, "label")["f1"] == 0.0


def test_ml_efficacy_multiclass():
    rng = np.random.default_rng(5)

    def table(n: int) -> pd.DataFrame:
        x = rng.normal(0, 1, n)
        return pd.DataFrame({"x": x, "k": np.digitize(x + rng.normal(0, 0.2, n), [-0.5, 0.5])})

    out = ml_efficacy(table(600), table(300), "k", seed=0, kinds={"x": "numerical", "k": "categorical"})
    assert out["average"] == "macro" and set(out["models"]) == {"DecisionTreeClassifier", "MLPClassifier"}
    assert out["f1"] > 0.6


def test_evaluate_table(tables):
    real, synth = tables
    out = evaluate_table(real, synth, target="flag", seed=0, detection_rows=500)
    assert {"column_shapes", "column_pair_trends", "quality", "detection_auc", "detection_score", "columns",
            "pairs", "ml_efficacy_f1", "ml_efficacy_models"} <= set(out)
    assert out["quality"] == pytest.approx((out["column_shapes"] + out["column_pair_trends"]) / 2)
    assert 0.5 < out["detection_auc"] < 1 and 0 <= out["detection_score"] <= 1
    reordered = evaluate_table(real, synth[synth.columns[::-1]], target="flag", seed=0, detection_rows=500)
    assert reordered["quality"] == out["quality"] and reordered["detection_auc"] == out["detection_auc"]
    assert "ml_efficacy_f1" not in evaluate_table(real, synth)
    with pytest.raises(ValueError, match=r"missing \['z'\]"):
        evaluate_table(real, synth.drop(columns="z"))


def test_quality_score_is_fast():
    rng = np.random.default_rng(6)
    parts = [make_table(rng, 5000).add_suffix(f"_{i}") for i in range(3)]
    real = pd.concat(parts, axis=1).iloc[:, :15]
    synth = pd.concat([make_table(rng, 5000, shift=0.2).add_suffix(f"_{i}") for i in range(3)], axis=1)[real.columns]
    kinds = column_kinds(real)
    quality_score(real, synth, kinds)  # warm-up (imports, caches)
    t0 = time.perf_counter()
    score = quality_score(real, synth, kinds)
    assert time.perf_counter() - t0 < 1.0
    assert 0 < score < 1
