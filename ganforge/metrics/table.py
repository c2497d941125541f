"""Scores of a synthetic table against a real one, with the definitions SDMetrics and SDGym use.

- :func:`column_shapes` and :func:`column_pair_trends`: the two properties of SDMetrics' single-table
  ``QualityReport`` (sdmetrics 0.32), reimplemented so that a score can be taken every few epochs of
  training; :func:`quality_score` is their mean (the report's overall score). The tests check that the
  numbers agree with SDMetrics' own to 1e-6.
- :func:`detection_auc`: how well a logistic regression tells real rows from synthetic ones (ROC AUC,
  cross-validated; 0.5 = indistinguishable); :func:`detection_score` turns it into SDMetrics' 0-to-1 score.
- :func:`ml_efficacy`: train classifiers on synthetic rows, test them on real held-out rows (F1), with
  the models and the preprocessing of SDGym's leaderboard.
- :func:`evaluate_table`: all of them at once.

Column kinds are ``"numerical"``, ``"datetime"`` and ``"categorical"`` (SDMetrics' sdtypes; a boolean
column is categorical). Datetimes are compared as int64 nanoseconds since the epoch.
"""
from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ConstantInputWarning, ks_2samp, pearsonr
from scipy.stats.contingency import association, crosstab
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import AdaBoostClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier

KINDS = ("numerical", "datetime", "categorical")
_CONTINUOUS = ("numerical", "datetime")

# sdmetrics.reports.utils: QualityReport only averages the pairs whose real data are correlated
# (|Pearson r| > 0.5) or associated (Cramer's V > 0.3); it subsamples contingency pairs above 50,000 rows.
SDMETRICS_CORRELATION_THRESHOLD = 0.5
SDMETRICS_ASSOCIATION_THRESHOLD = 0.3
SDMETRICS_NUM_ROWS_SUBSAMPLE = 50_000
# KSComplement rounds to this many decimals (sys.float_info.dig - 1) so that float noise makes no tie differ.
_KS_DECIMALS = 14
_MISSING = "<missing>"


def column_kinds(df: pd.DataFrame, discrete_columns: Sequence[str] | None = None) -> dict[str, str]:
    """The kind of each column of ``df``, in column order.

    ``"categorical"`` for the ``discrete_columns`` and for object, category, string and bool dtypes;
    ``"datetime"`` for datetime64 columns; ``"numerical"`` for the other numeric ones. A column of any
    other dtype (e.g. timedelta) is categorical: its values can still be counted.
    """
    discrete = set(discrete_columns or ())
    unknown = discrete - set(df.columns)
    if unknown:
        raise ValueError(f"discrete_columns not in the table: {sorted(map(str, unknown))}")
    kinds = {}
    for name in df.columns:
        dtype = df[name].dtype
        if name in discrete or pd.api.types.is_bool_dtype(dtype):  # bool before numeric: bool counts as numeric
            kinds[name] = "categorical"
        elif pd.api.types.is_datetime64_any_dtype(dtype):
            kinds[name] = "datetime"
        elif pd.api.types.is_numeric_dtype(dtype):
            kinds[name] = "numerical"
        else:
            kinds[name] = "categorical"
    return kinds


def _check_kinds(kinds: Mapping[str, str]) -> None:
    bad = {c: k for c, k in kinds.items() if k not in KINDS}
    if bad:
        raise ValueError(f"unknown column kinds {bad}; expected one of {KINDS}")


def _datetime_ns(s: pd.Series) -> np.ndarray:
    """int64 nanoseconds since the epoch (what ``pd.to_numeric`` gives SDMetrics); NaT is int64's minimum."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_convert(None)  # UTC wall time, as pd.to_numeric reads an aware column
    return s.astype("datetime64[ns]").to_numpy().view(np.int64)


def _as_float(s: pd.Series, kind: str) -> np.ndarray:
    """A numerical or datetime column as float64, NaN where missing."""
    if kind == "datetime":
        out = _datetime_ns(s).astype(np.float64)
        out[s.isna().to_numpy()] = np.nan
        return out
    return pd.to_numeric(s).to_numpy(dtype=np.float64, na_value=np.nan)


# ---------------------------------------------------------------------------------------------- Column Shapes


def ks_complement(real: pd.Series, synth: pd.Series) -> float:
    """SDMetrics' KSComplement: 1 - the two-sample Kolmogorov-Smirnov statistic of the non-missing values.

    NaN when either side has no values (SDMetrics returns NaN there too).
    """
    values = []
    for s in (real, synth):
        s = s.dropna()
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            x = _datetime_ns(s)  # exact int64, as SDMetrics compares them (float64 would merge nearby instants)
        else:
            x = pd.to_numeric(s).to_numpy()
            if x.dtype.kind == "f":
                x = np.round(x, _KS_DECIMALS)
        values.append(x)
    if not len(values[0]) or not len(values[1]):
        return float("nan")
    # The statistic does not depend on the p-value method; "asymp" skips the exact p-value, which is slow for
    # a few thousand rows.
    return float(1.0 - ks_2samp(values[0], values[1], method="asymp").statistic)


def tv_complement(real: pd.Series, synth: pd.Series) -> float:
    """SDMetrics' TVComplement: 1 - the total variation distance of the category frequencies, missing values
    dropped.

    As in ``sdmetrics.utils.get_frequencies``, a category seen only in the synthetic column gets a real count of
    1e-6 (its real frequency is then not exactly 0, and the real frequencies are normalised with it). NaN when
    either side has no values (SDMetrics raises there, and its report records NaN).
    """
    counts = []
    for s in (real, synth):
        c = s.dropna().value_counts()
        c = c[c > 0]  # a category dtype lists its unused categories; SDMetrics counts only values present
        c.index = c.index.astype(object)
        counts.append(c.astype(np.float64))
    if not len(counts[0]) or not len(counts[1]):
        return float("nan")
    r, s = counts[0].align(counts[1], fill_value=0.0)
    r = r.where(r > 0, 1e-6)
    return float(1.0 - 0.5 * np.abs(s / s.sum() - r / r.sum()).sum())


def column_shapes(real: pd.DataFrame, synth: pd.DataFrame, kinds: Mapping[str, str]) -> dict[str, Any]:
    """SDMetrics' Column Shapes: KSComplement for numerical and datetime columns, TVComplement for categorical
    ones. Returns ``{"score": mean, "columns": {name: score}}``; a column that cannot be scored (no values on
    one side) is NaN and left out of the mean, as in the report.
    """
    _check_kinds(kinds)
    columns = {}
    for name, kind in kinds.items():
        metric = ks_complement if kind in _CONTINUOUS else tv_complement
        columns[name] = metric(real[name], synth[name])
    return {"score": _nanmean(columns.values()), "columns": columns}


def _nanmean(values: Any) -> float:
    """Mean of the non-NaN values (pandas' ``Series.mean``, as the report averages), NaN if there are none."""
    return float(pd.Series(list(values), dtype=np.float64).mean())


# ------------------------------------------------------------------------------------------ Column Pair Trends


def _discretize(x: np.ndarray) -> np.ndarray | None:
    """A continuous column's bin as ColumnPairTrends makes it: ``np.digitize`` on the 10 equal-width bins of
    ``np.histogram_bin_edges`` of the same table's non-missing values. Indices run 0-11: 11 holds the maximum
    and the missing values (digitize puts NaN past the last edge). None where the edges cannot be made
    (infinite values), which makes SDMetrics score that column's mixed pairs NaN.
    """
    try:
        edges = np.histogram_bin_edges(x[~np.isnan(x)])
    except ValueError:
        return None
    return np.digitize(x, edges)


class _PairInputs:
    """What the pair metrics need of the two tables, computed once per column rather than once per pair."""

    def __init__(self, real: pd.DataFrame, synth: pd.DataFrame, kinds: Mapping[str, str],
                 num_rows_subsample: int | None, seed: int):
        self.values: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.constant: dict[str, bool] = {}
        self.codes: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
        for name, kind in kinds.items():
            if kind in _CONTINUOUS:
                xr, xs = _as_float(real[name], kind), _as_float(synth[name], kind)
                self.values[name] = (xr, xs)
                # CorrelationSimilarity refuses a column with one distinct value on either side (nunique == 1;
                # an all-missing column has 0 and is not refused).
                present = (x[~np.isnan(x)] for x in (xr, xs))
                self.constant[name] = any(len(v) and v.min() == v.max() for v in present)
                # NB: SDMetrics bins each table on its own edges, not the real table's (reports/single_table/
                # _properties/column_pair_trends.py, _get_processed_data), so bin k means different values on the
                # two sides. Kept for agreement with the report.
                br, bs = _discretize(xr), _discretize(xs)
                self.codes[name] = None if br is None or bs is None else (br, bs)
            else:
                # One coding for both tables; missing is a category of its own (groupby(dropna=False)).
                codes, _ = pd.factorize(pd.concat([real[name], synth[name]], ignore_index=True).astype(object),
                                        use_na_sentinel=False)
                self.codes[name] = (codes[:len(real)], codes[len(real):])
        # ContingencySimilarity's num_rows_subsample: the report passes it when either table is longer. SDMetrics
        # samples each pair anew, unseeded; here one seeded sample of rows serves every contingency pair.
        self.rows: tuple[np.ndarray | slice, np.ndarray | slice] = (slice(None), slice(None))
        if num_rows_subsample and max(len(real), len(synth)) > num_rows_subsample:
            rng = np.random.default_rng(seed)
            self.rows = tuple(np.sort(rng.choice(n, min(n, num_rows_subsample), replace=False))
                              for n in (len(real), len(synth)))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)  # constant after dropping missing rows: r is NaN
        try:
            return float(pearsonr(x, y).statistic)
        except ValueError:  # fewer than 2 complete rows
            return float("nan")


def _correlation_similarity(p: _PairInputs, a: str, b: str, threshold: float) -> tuple[float, float, float]:
    """CorrelationSimilarity (Pearson): (score, similarity, real r). The score is NaN where |r_real| <= threshold
    (SDMetrics' ``real_correlation_threshold``), the similarity, 1 - |r_real - r_synth| / 2, is not."""
    if p.constant[a] or p.constant[b]:
        return float("nan"), float("nan"), float("nan")
    r = []
    for side in (0, 1):
        x, y = p.values[a][side], p.values[b][side]
        complete = ~(np.isnan(x) | np.isnan(y))  # SDMetrics drops the rows missing either value
        r.append(_pearson(x[complete], y[complete]))
    similarity = 1.0 - abs(r[0] - r[1]) / 2.0
    score = float("nan") if abs(r[0]) <= threshold else similarity
    return score, similarity, r[0]


def _contingency_similarity(p: _PairInputs, a: str, b: str, threshold: float) -> tuple[float, float, float]:
    """ContingencySimilarity on the two columns' codes: (score, similarity, real Cramer's V). The similarity is
    1 - the total variation distance of the joint frequencies; the score is NaN where Cramer's V of the real
    table is <= threshold (SDMetrics' ``real_association_threshold``; V is only computed when threshold > 0)."""
    nan = float("nan")
    if p.codes[a] is None or p.codes[b] is None:
        return nan, nan, nan
    ar, as_ = (c[rows] for c, rows in zip(p.codes[a], p.rows, strict=True))
    br, bs = (c[rows] for c, rows in zip(p.codes[b], p.rows, strict=True))
    if not len(ar) or not len(as_):
        return nan, nan, nan
    width = int(max(br.max(), bs.max())) + 1
    cells, inverse = np.unique(np.concatenate([ar * width + br, as_ * width + bs]), return_inverse=True)
    freq_r = np.bincount(inverse[:len(ar)], minlength=len(cells)) / len(ar)
    freq_s = np.bincount(inverse[len(ar):], minlength=len(cells)) / len(as_)
    similarity = float(1.0 - 0.5 * np.abs(freq_r - freq_s).sum())
    if threshold <= 0:
        return similarity, similarity, nan
    table = crosstab(ar, br).count  # the real contingency table over the values present, as SDMetrics unstacks it
    if table.sum() == 0 or min(table.shape) < 2:
        return nan, similarity, nan
    v = float(association(table, method="cramer"))
    return (similarity if v > threshold else nan), similarity, v


def column_pair_trends(real: pd.DataFrame, synth: pd.DataFrame, kinds: Mapping[str, str], *,
                       real_correlation_threshold: float = SDMETRICS_CORRELATION_THRESHOLD,
                       real_association_threshold: float = SDMETRICS_ASSOCIATION_THRESHOLD,
                       num_rows_subsample: int | None = SDMETRICS_NUM_ROWS_SUBSAMPLE,
                       seed: int = 0) -> dict[str, Any]:
    """SDMetrics' Column Pair Trends over every pair of columns (in ``kinds`` order).

    Two numerical/datetime columns: CorrelationSimilarity, 1 - |r_real - r_synth| / 2 with Pearson's r on the
    rows where both are present. Any other pair: ContingencySimilarity, 1 - the total variation distance of the
    joint frequencies, missing values a category of their own, numerical/datetime columns cut into the bins of
    :func:`_discretize`.

    The thresholds default to those of sdmetrics 0.32's QualityReport: a pair whose real columns are not
    correlated (|r| <= 0.5) or associated (Cramer's V <= 0.3) has a NaN score and does not count. Set both to
    0 for the plain mean over all pairs (the report before the thresholds).

    Returns ``{"score", "pairs", "similarity", "real", "metrics"}``: ``score`` is the mean of the non-NaN pair
    scores (NaN if none); ``pairs`` maps ``"a|b"`` to the pair's score as in the report's details (NaN below the
    threshold or when incomputable); ``similarity`` the same without the threshold; ``real`` the real table's
    correlation or Cramer's V (NaN where not computed); ``metrics`` the metric's name.
    """
    _check_kinds(kinds)
    p = _PairInputs(real, synth, kinds, num_rows_subsample, seed)
    out: dict[str, dict[str, Any]] = {"pairs": {}, "similarity": {}, "real": {}, "metrics": {}}
    for a, b in itertools.combinations(kinds, 2):
        key = f"{a}|{b}"
        if kinds[a] in _CONTINUOUS and kinds[b] in _CONTINUOUS:
            metric, result = "CorrelationSimilarity", _correlation_similarity(p, a, b, real_correlation_threshold)
        else:
            metric, result = "ContingencySimilarity", _contingency_similarity(p, a, b, real_association_threshold)
        out["pairs"][key], out["similarity"][key], out["real"][key] = result
        out["metrics"][key] = metric
    return {"score": _nanmean(out["pairs"].values()), **out}


def quality_score(real: pd.DataFrame, synth: pd.DataFrame, kinds: Mapping[str, str]) -> float:
    """SDMetrics' overall quality score: the mean of Column Shapes and Column Pair Trends (NaN-skipping, as the
    report's ``np.nanmean``: with no pair above the thresholds it is Column Shapes alone).

    Vectorised per column and per pair (no loop over rows), for scoring during training: 15 columns of 5,000
    rows take about 0.1 s.
    """
    return _nanmean([column_shapes(real, synth, kinds)["score"], column_pair_trends(real, synth, kinds)["score"]])


# ------------------------------------------------------------------------------------------------- Detection


def _subsample(df: pd.DataFrame, max_rows: int | None, rng: np.random.Generator) -> pd.DataFrame:
    if max_rows is None or len(df) <= max_rows:
        return df
    return df.iloc[np.sort(rng.choice(len(df), max_rows, replace=False))]


def _detection_frame(df: pd.DataFrame, kinds: Mapping[str, str]) -> pd.DataFrame:
    """Numerical and datetime columns as float (inf as missing, as SDMetrics' detection does), categorical ones
    as strings with missing a category of its own."""
    out = {}
    for name, kind in kinds.items():
        if kind in _CONTINUOUS:
            x = _as_float(df[name], kind)
            x[np.isinf(x)] = np.nan
            out[name] = x
        else:
            s = df[name]
            out[name] = np.where(s.isna().to_numpy(), _MISSING, s.astype(str).to_numpy()).astype(object)
    return pd.DataFrame(out, index=range(len(df)))


def _detection_fold_aucs(real: pd.DataFrame, synth: pd.DataFrame, kinds: Mapping[str, str] | None,
                         seed: int, max_rows: int | None) -> np.ndarray:
    kinds = column_kinds(real) if kinds is None else kinds
    _check_kinds(kinds)
    rng = np.random.default_rng(seed)
    real, synth = _subsample(real, max_rows, rng), _subsample(synth, max_rows, rng)
    x = pd.concat([_detection_frame(real, kinds), _detection_frame(synth, kinds)], ignore_index=True)
    y = np.r_[np.ones(len(real), dtype=int), np.zeros(len(synth), dtype=int)]  # real = 1, as SDMetrics
    numeric = [c for c, k in kinds.items() if k in _CONTINUOUS]
    categorical = [c for c, k in kinds.items() if k == "categorical"]
    parts = []
    if numeric:
        # Mean imputation as SDMetrics' HyperTransformer, plus an indicator so that a difference in how often
        # values are missing is visible; standardised so that lbfgs converges.
        parts.append(("num", Pipeline([("impute", SimpleImputer(strategy="mean", add_indicator=True)),
                                       ("scale", StandardScaler())]), numeric))
    if categorical:
        parts.append(("cat", OneHotEncoder(handle_unknown="ignore"), categorical))
    model = Pipeline([("features", ColumnTransformer(parts)),
                      ("classifier", LogisticRegression(solver="lbfgs", max_iter=1000, random_state=seed))])
    cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cross_val_score(model, x, y, cv=cv, scoring="roc_auc", error_score="raise")


def detection_auc(real: pd.DataFrame, synth: pd.DataFrame, seed: int = 0, max_rows: int | None = None, *,
                  kinds: Mapping[str, str] | None = None) -> float:
    """ROC AUC of a logistic regression telling real rows (1) from synthetic ones (0): the mean over a seeded,
    shuffled, stratified 3-fold cross-validation. 0.5 = indistinguishable, 1 = fully separable.

    Features: numerical and datetime columns mean-imputed with a missing indicator and standardised, categorical
    ones one-hot (missing a category); fitted within each fold. ``kinds`` defaults to :func:`column_kinds` of
    ``real``. With ``max_rows``, each side is first subsampled (seeded) to at most that many rows.

    Like SDMetrics' LogisticDetection (real = 1, StratifiedKFold(3, shuffle=True), lbfgs), but seeded, with a
    StandardScaler instead of its RobustScaler and one-hot categoricals fitted per fold rather than on the real
    table, so the AUC is close to, not the same as, SDMetrics'.
    """
    return float(np.mean(_detection_fold_aucs(real, synth, kinds, seed, max_rows)))


def detection_score(auc: float | Sequence[float]) -> float:
    """SDMetrics' detection score from a ROC AUC: 1 - (max(auc, 0.5) * 2 - 1); 1 = indistinguishable.

    SDMetrics clips each fold's AUC before averaging; pass the fold AUCs (a sequence) for exactly that, or one
    mean AUC (then a fold below 0.5 lowers the score slightly more than in SDMetrics).
    """
    return float(1.0 - np.mean(np.maximum(np.asarray(auc, dtype=np.float64), 0.5) * 2.0 - 1.0))


# --------------------------------------------------------------------------------------- ML efficacy (SDGym)

# SDGym v0.2.2 sdgym/evaluate.py, _MODELS (github.com/sdv-dev/SDGym, tag v0.2.2): the classifiers and their
# kwargs for 'binary_classification' and 'multiclass_classification'. SDGym also gave LogisticRegression
# n_jobs=2, which has no effect for lbfgs (and is deprecated since scikit-learn 1.8), so it is left out;
# AdaBoost's default algorithm was SAMME.R then, SAMME now (the only one left in scikit-learn).
_SDGYM_MODELS: dict[str, list[tuple[type, dict[str, Any]]]] = {
    "binary": [
        (DecisionTreeClassifier, {"max_depth": 15, "class_weight": "balanced"}),
        (AdaBoostClassifier, {}),
        (LogisticRegression, {"solver": "lbfgs", "class_weight": "balanced", "max_iter": 50}),
        (MLPClassifier, {"hidden_layer_sizes": (50,), "max_iter": 50}),
    ],
    "macro": [
        (DecisionTreeClassifier, {"max_depth": 30, "class_weight": "balanced"}),
        (MLPClassifier, {"hidden_layer_sizes": (100,), "max_iter": 50}),
    ],
}
# FeatureMaker(sample=50000): each table is shuffled and cut to its first 50,000 rows.
_SDGYM_SAMPLE = 50_000


class _SDGymFeatures:
    """SDGym v0.2.2's ``FeatureMaker`` (sdgym/evaluate.py) on data frames.

    SDGym's datasets stored categorical columns as integer codes, the categories in order of decreasing
    frequency in the real data (sdgym/utils/data/real/adult.py: ``value_counts`` sorted by ``-count``), and
    continuous columns with their real ``min``/``max`` in the metadata. FeatureMaker then made:

    - continuous: ``log(max(x, 1e-2))`` if min >= 0 and max >= 1e3, else ``(x - min) / (max - min) * 5``;
    - categorical with <= 2 categories: the code itself; with more: one-hot, the encoder fitted on the
      training (synthetic) codes, ``handle_unknown='ignore'``;
    - the label: its code, so for a binary target the positive class (code 1) is the real data's less frequent.

    Here the real statistics come from the real test table. Additions for what SDGym's data never had: a value
    the real data lacks gets code -1; a missing categorical value is a category (counted like the others); a
    missing continuous value is filled with the real mean; datetimes (int64 ns) always take the min-max branch
    (the log of nanoseconds since 1970 would flatten them); a constant real column gives 0.
    """

    def __init__(self, real: pd.DataFrame, kinds: Mapping[str, str], target: str):
        self.kinds = {c: k for c, k in kinds.items() if c != target}
        self.target = target
        self.categories: dict[str, pd.Index] = {}
        self.ranges: dict[str, tuple[float, float, float, bool]] = {}
        self.encoders: dict[str, OneHotEncoder] = {}
        for name, kind in [*self.kinds.items(), (target, "categorical")]:
            if kind == "categorical":
                # Decreasing real frequency (SDGym sorted value_counts' items by -count, a stable sort).
                self.categories[name] = real[name].astype(object).value_counts(dropna=False).index
            else:
                x = _as_float(real[name], kind)
                x = x[np.isfinite(x)]
                lo, hi, mean = (float(x.min()), float(x.max()), float(x.mean())) if len(x) else (0.0, 0.0, 0.0)
                self.ranges[name] = (lo, hi, mean, kind == "numerical" and lo >= 0 and hi >= 1e3)

    def codes(self, s: pd.Series) -> np.ndarray:
        return self.categories[s.name].get_indexer(s.astype(object))

    def make(self, df: pd.DataFrame, fit: bool) -> tuple[np.ndarray, np.ndarray]:
        features = []
        for name, kind in self.kinds.items():
            if kind == "categorical":
                code = self.codes(df[name])
                if len(self.categories[name]) <= 2:
                    features.append(code.astype(np.float64)[:, None])
                    continue
                if fit:
                    self.encoders[name] = OneHotEncoder(sparse_output=False, handle_unknown="ignore")
                    self.encoders[name].fit(code[:, None])
                features.append(self.encoders[name].transform(code[:, None]))
            else:
                lo, hi, mean, log = self.ranges[name]
                x = _as_float(df[name], kind)
                x = np.where(np.isnan(x), mean, x)
                x = np.log(np.maximum(x, 1e-2)) if log else (x - lo) / (hi - lo) * 5 if hi > lo else np.zeros_like(x)
                features.append(x[:, None])
        x = np.hstack(features) if features else np.zeros((len(df), 0))
        return x, self.codes(df[self.target])


def ml_efficacy(synth_train: pd.DataFrame, real_test: pd.DataFrame, target: str, seed: int = 0, *,
                kinds: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Machine-learning efficacy as SDGym's leaderboard measured it: classifiers trained on the synthetic rows
    predict ``target`` on real held-out rows; F1 per model and its mean over the models.

    Binary target (two classes in ``real_test``): binary F1 of SDGym's four binary classifiers
    (DecisionTreeClassifier(max_depth=15, class_weight='balanced'), AdaBoostClassifier(),
    LogisticRegression(solver='lbfgs', class_weight='balanced', max_iter=50), MLPClassifier((50,), max_iter=50)),
    the positive class being the real data's less frequent one (SDGym's code 1). More classes: macro F1 of
    SDGym's multiclass classifiers (DecisionTreeClassifier(max_depth=30, class_weight='balanced'),
    MLPClassifier((100,), max_iter=50)). Features as SDGym's FeatureMaker (see :class:`_SDGymFeatures`);
    ``kinds`` defaults to :func:`column_kinds` of ``real_test``; the target is always treated as categorical.

    ``random_state=seed`` for every model and for the row shuffle. Synthetic rows whose target value the real
    data lacks are dropped; if the synthetic target then has a single class (or no rows), every model scores 0
    (SDGym would predict that class everywhere). Returns ``{"f1", "models": {name: f1}, "average": "binary" or
    "macro", "positive": the positive class (binary only)}``.
    """
    kinds = column_kinds(real_test) if kinds is None else kinds
    _check_kinds(kinds)
    missing = {target, *kinds} - set(synth_train.columns)
    if missing:
        raise ValueError(f"columns missing from the synthetic table: {sorted(map(str, missing))}")
    fm = _SDGymFeatures(real_test, kinds, target)
    n_classes = len(fm.categories[target])
    if n_classes < 2:
        raise ValueError(f"target {target!r} has {n_classes} class in the real table; need at least 2")
    average = "binary" if n_classes == 2 else "macro"
    rng = np.random.default_rng(seed)
    # FeatureMaker shuffles each table and keeps its first 50,000 rows.
    train = synth_train.iloc[rng.permutation(len(synth_train))[:_SDGYM_SAMPLE]]
    test = real_test.iloc[rng.permutation(len(real_test))[:_SDGYM_SAMPLE]]
    train = train[fm.codes(train[target]) >= 0]
    x_train, y_train = fm.make(train, fit=True)
    x_test, y_test = fm.make(test, fit=False)
    models = {}
    for cls, kwargs in _SDGYM_MODELS[average]:
        if len(np.unique(y_train)) < 2:
            models[cls.__name__] = 0.0
            continue
        model = cls(**kwargs, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # SDGym's max_iter=50 rarely converges
            model.fit(x_train, y_train)
        models[cls.__name__] = float(f1_score(y_test, model.predict(x_test), average=average, zero_division=0))
    out: dict[str, Any] = {"f1": float(np.mean(list(models.values()))), "models": models, "average": average}
    if average == "binary":
        out["positive"] = fm.categories[target][1]
    return out


# ------------------------------------------------------------------------------------------------- Everything


def evaluate_table(real: pd.DataFrame, synth: pd.DataFrame, discrete_columns: Sequence[str] | None = None,
                   target: str | None = None, seed: int = 0, detection_rows: int | None = None) -> dict[str, Any]:
    """Every score of ``synth`` against ``real``.

    Keys: ``column_shapes``, ``column_pair_trends``, ``quality`` (their mean, SDMetrics' overall quality score),
    ``detection_auc`` (mean fold AUC), ``detection_score`` (SDMetrics' convention on the fold AUCs), ``columns``
    (per-column shape scores), ``pairs`` (per-pair trend scores, NaN for pairs below SDMetrics' thresholds), and
    with a ``target``: ``ml_efficacy_f1`` and ``ml_efficacy_models`` (trained on ``synth``, tested on ``real``,
    which should then be rows the generator did not see). ``detection_rows`` caps each side of the detection
    classifier's data. Column kinds come from ``real`` (:func:`column_kinds` with ``discrete_columns``).
    """
    missing, extra = [c for c in real.columns if c not in synth.columns], [c for c in synth.columns
                                                                           if c not in real.columns]
    if missing or extra:
        raise ValueError(f"the synthetic table's columns differ from the real one's: missing {missing}, extra {extra}")
    synth = synth[list(real.columns)]
    kinds = column_kinds(real, discrete_columns)
    shapes = column_shapes(real, synth, kinds)
    trends = column_pair_trends(real, synth, kinds, seed=seed)
    aucs = _detection_fold_aucs(real, synth, kinds, seed, detection_rows)
    out: dict[str, Any] = {
        "column_shapes": shapes["score"],
        "column_pair_trends": trends["score"],
        "quality": _nanmean([shapes["score"], trends["score"]]),
        "detection_auc": float(np.mean(aucs)),
        "detection_score": detection_score(aucs),
    }
    if target is not None:
        ml = ml_efficacy(synth, real, target, seed, kinds=kinds)
        out["ml_efficacy_f1"], out["ml_efficacy_models"] = ml["f1"], ml["models"]
    out["columns"], out["pairs"] = shapes["columns"], trends["pairs"]
    return out
