"""The table transformer: a DataFrame to G's output space and back (CTGAN's, with the cases it lacks).

Each column becomes one or more output spans whose activations drive G's heads
(:class:`~ganforge.spec.Span`):

- **continuous** (floats, integers with many values, datetimes and dates): mode-specific
  normalization (Xu et al. 2019). A variational Gaussian mixture (scikit-learn's
  BayesianGaussianMixture, at most ``max_modes`` components, those with weight above
  ``weight_threshold`` kept) is fitted on a seeded subsample of at most ``max_fit_rows`` values, so
  large tables stay fast. A value becomes ``alpha = (x - mu_k) / (4 sigma_k)`` (a ``tanh`` span of
  width 1) and the one-hot of its mode ``k``, drawn from the mixture's posterior (a ``softmax`` span).
  Samples come back inside the observed range, integers as integers, datetimes as datetimes (dates
  as dates when every value falls on midnight or the column held ``datetime.date`` objects).
- **discrete** (text, categories, booleans, integers with few values): a one-hot ``softmax`` span,
  sampled with Gumbel-softmax by the generator. Missing values are one more category.
- **missing numbers**: a continuous column with missing values gets a ``softmax`` span of width 2
  (present, missing) that G learns, so missing values come back at their observed rate.
- **constant** columns (one value, possibly missing everywhere) take no span and come back as that value.
- **identifiers**: a text column where at least ``id_ratio`` of the rows hold distinct values, or an
  integer column whose values are all distinct and dense (their range at most twice the number of
  rows), is ID-like. It is not modelled (a one-hot of 10,000 ids would learn nothing and exhaust
  memory); sampled rows get fresh unique ids in the same format (integers counting up from the
  observed minimum, text as the observed common prefix plus a zero-padded counter).
- **high cardinality**: a discrete column with more than ``max_categories`` values keeps the most
  frequent ``max_categories - 1`` and pools the rest into one category; a sampled row in the pool
  gets one of the pooled values, drawn at their observed frequencies.

The fitted transformer is plain JSON (:meth:`config`), saved with the exported generator; nothing is
pickled.
"""
from __future__ import annotations

import datetime as _dt
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ganforge.data.transform import register_transform
from ganforge.registry import ConfigError
from ganforge.spec import Span

# Integer columns with at most this many distinct values are discrete when not said otherwise.
DISCRETE_INT_VALUES = 20


def _json_value(v: Any) -> Any:
    """A cell as JSON: numpy scalars as Python numbers, missing (None, NaN, NaT, pd.NA) as None."""
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (pd.Timestamp, _dt.datetime, _dt.date)):
        return v.isoformat()
    return v


def detect_discrete(df: pd.DataFrame) -> list[str]:
    """Columns treated as discrete when none are given: object, category, string and bool columns,
    and integer columns with at most :data:`DISCRETE_INT_VALUES` distinct values."""
    out = []
    for name in df.columns:
        s = df[name]
        if _is_datelike(s):
            continue
        if (s.dtype == object or isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(s)
                or pd.api.types.is_bool_dtype(s)):
            out.append(name)
        elif pd.api.types.is_integer_dtype(s) and s.nunique(dropna=True) <= DISCRETE_INT_VALUES:
            out.append(name)
    return out


def _is_datelike(s: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(s):
        return True
    if s.dtype == object:
        values = s.dropna()
        # A cheap look at the first values before checking them all.
        return len(values) > 0 and all(isinstance(v, _dt.date) for v in values.iloc[:100]) and \
            all(isinstance(v, _dt.date) for v in values)
    return False


class TableTransformer:
    """fit / transform / inverse_transform between a DataFrame and G's output (see the module doc)."""

    kind = "tabular"

    def __init__(self, max_modes: int = 10, weight_threshold: float = 0.005, max_fit_rows: int = 10_000,
                 max_categories: int = 500, id_ratio: float = 0.9, seed: int = 0) -> None:
        if max_modes < 1 or max_fit_rows < 10 or max_categories < 2:
            raise ConfigError("TableTransformer: max_modes >= 1, max_fit_rows >= 10, max_categories >= 2")
        self.max_modes, self.weight_threshold, self.max_fit_rows = max_modes, weight_threshold, max_fit_rows
        self.max_categories, self.id_ratio, self.seed = max_categories, id_ratio, seed
        self.columns: list[dict[str, Any]] = []

    # -- fitting ---------------------------------------------------------------------------------

    def fit(self, df: pd.DataFrame, discrete_columns: Sequence[str] | None = None) -> TableTransformer:
        """Learn each column's encoding from ``df`` (discrete columns detected when not given)."""
        if not isinstance(df, pd.DataFrame):
            raise ConfigError(f"expected a pandas DataFrame, got {type(df).__name__}")
        if len(df) < 2:
            raise ConfigError(f"a table needs at least 2 rows to learn from, got {len(df)}")
        if df.columns.duplicated().any():
            dup = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
            raise ConfigError(f"duplicate column names: {', '.join(dup)}")
        discrete = list(detect_discrete(df) if discrete_columns is None else discrete_columns)
        missing = [c for c in discrete if c not in df.columns]
        if missing:
            raise ConfigError(f"discrete column(s) not in the table: {', '.join(map(str, missing))} "
                              f"(columns: {', '.join(map(str, df.columns))})")
        rng = np.random.default_rng(self.seed)
        self.columns = [self._fit_column(str(name), df[name], name in discrete, rng) for name in df.columns]
        self.names = [str(c) for c in df.columns]
        return self

    def _fit_column(self, name: str, s: pd.Series, discrete: bool, rng: np.random.Generator) -> dict[str, Any]:
        info: dict[str, Any] = {"name": name, "dtype": str(s.dtype), "missing_rate": float(s.isna().mean())}
        values = s.dropna()
        if values.nunique() == 1 and info["missing_rate"] > 0:
            # One value and missing ones ("yes" or blank): two categories, learned at their rate.
            return self._fit_discrete(info, s)
        if values.nunique() <= 1:
            info.update(kind="constant", value=_json_value(values.iloc[0]) if len(values) else None,
                        datelike=_is_datelike(s))
            return info
        if not discrete and _is_datelike(s):
            return self._fit_continuous(info, s, rng, datelike=True)
        if not discrete and pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            if pd.api.types.is_integer_dtype(s) and self._id_like_int(values):
                return self._fit_id(info, values)
            return self._fit_continuous(info, s, rng)
        if not discrete:
            raise ConfigError(f"column '{name}' holds {s.dtype} values and cannot be continuous: "
                              "list it among the discrete columns")
        if (s.dtype == object or pd.api.types.is_string_dtype(s)) and len(s) >= 20 \
                and values.nunique() >= self.id_ratio * len(s):
            return self._fit_id(info, values)
        if pd.api.types.is_integer_dtype(s) and len(s) >= 20 and self._id_like_int(values) \
                and values.nunique() > self.max_categories:
            return self._fit_id(info, values)
        return self._fit_discrete(info, s)

    def _id_like_int(self, values: pd.Series) -> bool:
        n = len(values)
        return n >= 20 and values.is_unique and float(values.max() - values.min()) + 1 <= 2 * n

    def _fit_id(self, info: dict[str, Any], values: pd.Series) -> dict[str, Any]:
        if pd.api.types.is_integer_dtype(values):
            info.update(kind="id", integer=True, start=int(values.min()))
            return info
        text = values.astype(str)
        prefix = _common_prefix(text.iloc[:1000].tolist())
        width = int(text.str.len().max()) - len(prefix)
        info.update(kind="id", integer=False, prefix=prefix, width=max(width, 1))
        return info

    def _fit_continuous(self, info: dict[str, Any], s: pd.Series, rng: np.random.Generator,
                        datelike: bool = False) -> dict[str, Any]:
        from sklearn.mixture import BayesianGaussianMixture

        x = _numeric(s, datelike)
        x = x[~np.isnan(x)]
        # Mixtures are fitted on standardized values: raw datetimes (~1e18 ns) or money amounts
        # would make the mixture's covariance estimates ill-conditioned.
        mean, std = float(x.mean()), float(x.std()) or 1.0
        z = (x - mean) / std
        fit = z if len(z) <= self.max_fit_rows else rng.choice(z, self.max_fit_rows, replace=False)
        k = min(self.max_modes, len(np.unique(fit)))
        # The settings of CTGAN's transformer (rdt's ClusterBasedNormalizer).
        bgm = BayesianGaussianMixture(n_components=k, weight_concentration_prior_type="dirichlet_process",
                                      weight_concentration_prior=0.001, max_iter=100, n_init=1,
                                      random_state=int(rng.integers(2**31 - 1)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning on near-discrete columns
            bgm.fit(fit.reshape(-1, 1))
        keep = bgm.weights_ > self.weight_threshold
        if not keep.any():
            keep[np.argmax(bgm.weights_)] = True
        # Whole numbers come back whole, whatever the dtype (CSV readers often give floats: 39.0).
        is_int = not datelike and bool(np.all(np.mod(x, 1) == 0))
        info.update(kind="continuous", mean=mean, std=std, datelike=datelike,
                    means=bgm.means_[keep, 0].tolist(), stds=np.sqrt(bgm.covariances_[keep, 0, 0]).tolist(),
                    weights=bgm.weights_[keep].tolist(), min=float(x.min()), max=float(x.max()),
                    integer=bool(is_int), nullable=bool(info["missing_rate"] > 0),
                    date_only=bool(datelike and _date_only(s)), date_objects=bool(datelike and s.dtype == object),
                    tz=str(s.dt.tz) if datelike and isinstance(s.dtype, pd.DatetimeTZDtype) else None)
        return info

    def _fit_discrete(self, info: dict[str, Any], s: pd.Series) -> dict[str, Any]:
        counts = s.value_counts(dropna=False)
        cats = [_json_value(v) for v in counts.index]
        freq = [int(c) for c in counts.to_numpy()]
        pooled: list[Any] = []
        pooled_freq: list[int] = []
        if len(cats) > self.max_categories:
            keep = self.max_categories - 1
            pooled, pooled_freq = cats[keep:], freq[keep:]
            cats, freq = cats[:keep] + ["__other__"], freq[:keep] + [sum(pooled_freq)]
        info.update(kind="discrete", categories=cats, counts=freq, pooled=pooled, pooled_counts=pooled_freq,
                    bool=bool(pd.api.types.is_bool_dtype(s) or s.dropna().map(type).eq(bool).all()))
        return info

    # -- the output layout -----------------------------------------------------------------------

    @property
    def spans(self) -> tuple[Span, ...]:
        """G's output heads, column by column."""
        out: list[Span] = []
        for c in self.columns:
            if c["kind"] == "continuous":
                out += [Span(1, "tanh"), Span(len(c["means"]), "softmax")]
                if c["nullable"]:
                    out.append(Span(2, "softmax"))
            elif c["kind"] == "discrete":
                out.append(Span(len(c["categories"]), "softmax"))
            elif c["kind"] == "constant":
                continue
        return tuple(out)

    @property
    def width(self) -> int:
        return sum(s.width for s in self.spans)

    def discrete_layout(self) -> list[tuple[int, int]]:
        """(offset in G's output, width) of every discrete column's one-hot, in column order:
        the condition vector concatenates these one-hots."""
        out, offset = [], 0
        for c in self.columns:
            if c["kind"] == "continuous":
                offset += 1 + len(c["means"]) + (2 if c["nullable"] else 0)
            elif c["kind"] == "discrete":
                out.append((offset, len(c["categories"])))
                offset += len(c["categories"])
        return out

    def discrete_columns(self) -> list[dict[str, Any]]:
        return [c for c in self.columns if c["kind"] == "discrete"]

    # -- transform -------------------------------------------------------------------------------

    def transform(self, df: pd.DataFrame, seed: int | None = None) -> Tensor:
        """``df`` in G's output space (float32, one row per row); modes are drawn from the mixture's
        posterior with a seeded RNG (``seed``, default the transformer's)."""
        return self.encode(df, seed)[0]

    def encode(self, df: pd.DataFrame, seed: int | None = None) -> tuple[Tensor, np.ndarray | None]:
        """:meth:`transform`, and the category index of every row in each discrete column
        ((n, discrete columns), None without any), which training-by-sampling needs."""
        self._check_columns(df)
        rng = np.random.default_rng(self.seed if seed is None else seed)
        parts: list[np.ndarray] = []
        codes: list[np.ndarray] = []
        for c in self.columns:
            s = df[c["name"]]
            if c["kind"] == "continuous":
                parts += self._transform_continuous(c, s, rng)
            elif c["kind"] == "discrete":
                codes.append(self.codes(c, s))
                parts.append(_one_hot(codes[-1], len(c["categories"])))
        x = torch.from_numpy(np.concatenate(parts, axis=1).astype(np.float32)) if parts else torch.zeros(len(df), 0)
        return x, np.stack(codes, axis=1) if codes else None

    def codes(self, c: dict[str, Any], s: pd.Series) -> np.ndarray:
        """The category index of each value of a discrete column (unknown values: the pool, or the commonest)."""
        other = len(c["categories"]) - 1 if c["pooled"] else 0
        # Categories are kept as JSON values (timestamps as text, every kind of missing as None).
        values = pd.Index([_json_value(v) for v in s.astype(object)], dtype=object)
        if len({type(v) for v in values if v is not None}) > 1:
            # Mixed kinds of value: 1, 1.0 and True must stay apart, which a hash lookup does not do.
            lookup = {_key(v): i for i, v in enumerate(c["categories"])}
            found = np.fromiter((lookup.get(_key(v), -1) for v in values), dtype=np.int64, count=len(values))
        else:
            found = pd.Index(c["categories"], dtype=object).get_indexer(values)
        return np.where(found < 0, other, found).astype(np.int64)

    def _transform_continuous(self, c: dict[str, Any], s: pd.Series, rng: np.random.Generator) -> list[np.ndarray]:
        x = _numeric(s, c["datelike"])
        missing = np.isnan(x)
        z = (np.where(missing, c["mean"], x) - c["mean"]) / c["std"]
        mu, sd, w = np.array(c["means"]), np.array(c["stds"]), np.array(c["weights"])
        # Posterior of each kept mode given the value; the mode is drawn from it (as CTGAN does).
        logp = np.log(w) - 0.5 * ((z[:, None] - mu) / sd) ** 2 - np.log(sd)
        p = np.exp(logp - logp.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        u = rng.random(len(z))[:, None]
        mode = np.minimum((p.cumsum(1) < u).sum(1), len(mu) - 1)
        alpha = np.clip((z - mu[mode]) / (4 * sd[mode]), -0.99, 0.99)
        out = [alpha[:, None], _one_hot(mode, len(mu))]
        if c["nullable"]:
            out.append(_one_hot(missing.astype(np.int64), 2))
        return out

    # -- inverse ---------------------------------------------------------------------------------

    def inverse_transform(self, x: Tensor | np.ndarray, seed: int = 0) -> pd.DataFrame:
        """G's output back to a DataFrame with the training table's columns and dtypes."""
        a = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
        a = a.astype(np.float64)
        if a.ndim != 2 or a.shape[1] != self.width:
            raise ConfigError(f"expected rows of width {self.width}, got shape {tuple(a.shape)}")
        rng = np.random.default_rng(seed)
        n, offset, data = len(a), 0, {}
        for c in self.columns:
            kind = c["kind"]
            if kind == "continuous":
                k = len(c["means"])
                null = a[:, offset + 1 + k:offset + 3 + k] if c["nullable"] else None
                data[c["name"]] = self._inverse_continuous(c, a[:, offset], a[:, offset + 1:offset + 1 + k], null)
                offset += 1 + k + (2 if c["nullable"] else 0)
            elif kind == "discrete":
                k = len(c["categories"])
                data[c["name"]] = self._inverse_discrete(c, a[:, offset:offset + k].argmax(1), rng)
                offset += k
            elif kind == "constant":
                data[c["name"]] = self._constant(c, n)
            else:
                data[c["name"]] = self._ids(c, n)
        return pd.DataFrame(data, columns=self.names)

    def _inverse_continuous(self, c: dict[str, Any], alpha: np.ndarray, modes: np.ndarray,
                            null: np.ndarray | None) -> pd.Series:
        mu, sd = np.array(c["means"]), np.array(c["stds"])
        k = modes.argmax(1)
        z = np.clip(alpha, -1, 1) * 4 * sd[k] + mu[k]
        x = np.clip(z * c["std"] + c["mean"], c["min"], c["max"])
        missing = null.argmax(1) == 1 if null is not None else np.zeros(len(x), dtype=bool)
        if c["datelike"]:
            ts = pd.to_datetime(np.where(missing, np.nan, np.round(x)).astype("float64"), unit="ns")
            if c["date_only"]:
                ts = ts.round("D")
            if c["date_objects"]:
                return pd.Series([None if pd.isna(t) else t.date() for t in ts], dtype=object)
            out = pd.Series(ts)
            if c.get("tz"):  # values were taken in UTC nanoseconds
                return out.dt.tz_localize("UTC").dt.tz_convert(c["tz"])
            return out.astype(c["dtype"]) if c["dtype"].startswith("datetime64") else out
        if c["integer"]:
            x = np.round(x)
            if not c["dtype"].lower().startswith(("int", "uint")):
                return pd.Series(np.where(missing, np.nan, x)).astype(_float_dtype(c["dtype"]))
            if missing.any():
                return pd.Series(pd.array(np.where(missing, 0, x).astype(np.int64), dtype="Int64")).mask(missing)
            return pd.Series(x.astype(np.int64)).astype(c["dtype"])  # pandas dtypes too (Int64, UInt8)
        return pd.Series(np.where(missing, np.nan, x)).astype(_float_dtype(c["dtype"]))

    def _inverse_discrete(self, c: dict[str, Any], idx: np.ndarray, rng: np.random.Generator) -> pd.Series:
        cats = list(c["categories"])
        values = np.empty(len(idx), dtype=object)
        for i, v in enumerate(cats):
            values[idx == i] = v
        if c["pooled"]:
            pool = idx == len(cats) - 1
            p = np.array(c["pooled_counts"], dtype=np.float64)
            pooled = np.empty(len(c["pooled"]), dtype=object)
            pooled[:] = c["pooled"]
            values[pool] = pooled[rng.choice(len(p), int(pool.sum()), p=p / p.sum())]
        return _restore(pd.Series(values, dtype=object), c)

    def _constant(self, c: dict[str, Any], n: int) -> pd.Series:
        v = c["value"]
        if v is not None and c.get("datelike"):
            v = pd.Timestamp(v)
        return _restore(pd.Series([v] * n, dtype=object), c)

    def _ids(self, c: dict[str, Any], n: int) -> pd.Series:
        if c["integer"]:
            return pd.Series(np.arange(c["start"], c["start"] + n, dtype=np.int64)).astype(_int_dtype(c["dtype"]))
        width = max(c["width"], len(str(n - 1)))
        return pd.Series([f"{c['prefix']}{i:0{width}d}" for i in range(n)], dtype=object)

    # -- conditions (training-by-sampling, conditional sampling) --------------------------------

    def condition_index(self, column: str, value: Any) -> tuple[int, int]:
        """(which discrete column, which category) a ``column=value`` condition names."""
        for j, c in enumerate(self.discrete_columns()):
            if c["name"] != str(column):
                continue
            lookup = {_key(v): i for i, v in enumerate(c["categories"])}
            for candidate in _candidates(value):
                if _key(candidate) in lookup:
                    return j, lookup[_key(candidate)]
            shown = ", ".join(map(str, c["categories"][:10])) + (" ..." if len(c["categories"]) > 10 else "")
            raise ConfigError(f"condition {column}={value!r}: no such value (values: {shown})")
        names = ", ".join(c["name"] for c in self.discrete_columns()) or "none"
        raise ConfigError(f"condition on '{column}': conditions apply to discrete columns (here: {names})")

    def condition_vectors(self, n: int, generator: torch.Generator | None = None,
                          fixed: tuple[int, int] | None = None) -> Tensor:
        """Condition vectors for sampling: a discrete column chosen uniformly and its category at the
        observed frequencies (as CTGAN's sampling does), or the ``fixed`` (column, category)."""
        cols = self.discrete_columns()
        widths = [len(c["categories"]) for c in cols]
        out = torch.zeros(n, sum(widths))
        if not cols:
            return out
        offsets = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(int)
        if fixed is not None:
            out[:, offsets[fixed[0]] + fixed[1]] = 1
            return out
        which = torch.randint(len(cols), (n,), generator=generator)
        for j, c in enumerate(cols):
            rows = (which == j).nonzero().squeeze(1)
            if len(rows):
                p = torch.tensor(c["counts"], dtype=torch.float64)
                cat = torch.multinomial(p / p.sum(), len(rows), replacement=True, generator=generator)
                out[rows, int(offsets[j]) + cat] = 1
        return out

    def conditional_sample(self, draw: Callable[[int, int, Tensor | None], pd.DataFrame], n: int, seed: int,
                           conditions: dict[str, Any], max_tries: int = 50) -> pd.DataFrame:
        """Rows that satisfy every ``column=value`` condition: G is steered by the condition vector of
        the first one, and rows that miss any condition are rejected and drawn again."""
        fixed = [(col, self.condition_index(col, val)) for col, val in conditions.items()]
        cond = self.condition_vectors(1, fixed=fixed[0][1])
        got: list[pd.DataFrame] = []
        have, drawn = 0, 0
        for attempt in range(max_tries):
            # Draw as many as the acceptance rate so far says are needed (with a margin), capped.
            rate = max(have / drawn, 0.01) if drawn else 1.0
            m = int(min(max(1.2 * (n - have) / rate, 64), 100_000))
            drawn += m
            df = draw(m, seed + 7919 * attempt, cond.expand(m, -1).contiguous())
            keep = np.ones(len(df), dtype=bool)
            for col, (j, i) in fixed:
                wanted = self.discrete_columns()[j]["categories"][i]
                keep &= np.array([_key(_json_value(v)) == _key(wanted) for v in df[col]])
            got.append(df[keep])
            have += int(keep.sum())
            if have >= n:
                out = pd.concat(got).iloc[:n].reset_index(drop=True)
                for c in self.columns:  # fresh ids for the rows kept (each round restarted them)
                    if c["kind"] == "id":
                        out[c["name"]] = self._ids(c, n)
                return out
        raise ConfigError(f"could not draw {n} rows with {conditions} in {max_tries} rounds "
                          f"(got {have}): the combination is too rare for this model")

    # -- saving ----------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {"columns": self.columns, "names": self.names, "seed": self.seed,
                "settings": {"max_modes": self.max_modes, "weight_threshold": self.weight_threshold,
                             "max_fit_rows": self.max_fit_rows, "max_categories": self.max_categories,
                             "id_ratio": self.id_ratio}}

    def tensors(self) -> dict[str, Tensor]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any], tensors: dict[str, Tensor] | None = None) -> TableTransformer:
        t = cls(seed=config.get("seed", 0), **config.get("settings", {}))
        t.columns, t.names = config["columns"], config["names"]
        return t

    def summary(self) -> list[str]:
        """One line per column: how it is modelled."""
        lines = []
        for c in self.columns:
            if c["kind"] == "continuous":
                what = f"continuous, {len(c['means'])} modes" + (", datetime" if c["datelike"] else "")
                what += ", integer" if c["integer"] else ""
            elif c["kind"] == "discrete":
                what = f"discrete, {len(c['categories'])} values" + (
                    f" ({len(c['pooled'])} rare ones pooled)" if c["pooled"] else "")
            elif c["kind"] == "id":
                what = "ID-like: not modelled, fresh unique ids when sampling"
            else:
                what = f"constant ({c['value']!r})"
            if c["missing_rate"] > 0:
                what += f", {100 * c['missing_rate']:.1f}% missing"
            lines.append(f"{c['name']}: {what}")
        return lines

    def _check_columns(self, df: pd.DataFrame) -> None:
        missing = [n for n in self.names if n not in df.columns]
        if missing:
            raise ConfigError(f"the table lacks column(s) the transformer was fitted on: {', '.join(missing)}")


register_transform("tabular", TableTransformer.from_config,
                   "a table's columns: mode-specific normalization, one-hots, missing values, ids")


# -- helpers ---------------------------------------------------------------------------------------


def _numeric(s: pd.Series, datelike: bool) -> np.ndarray:
    """A column as float64 (datetimes as nanoseconds since the epoch), missing as NaN."""
    if datelike:
        ts = pd.to_datetime(pd.Series(s), errors="coerce")
        out = ts.to_numpy(dtype="datetime64[ns]").astype("int64").astype(np.float64)
        out[ts.isna().to_numpy()] = np.nan
        return out
    return pd.to_numeric(s, errors="coerce").astype(np.float64).to_numpy()


def _date_only(s: pd.Series) -> bool:
    ts = pd.to_datetime(s.dropna())
    return bool(len(ts)) and bool((ts == ts.dt.normalize()).all())


def _one_hot(idx: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((len(idx), k), dtype=np.float32)
    out[np.arange(len(idx)), idx] = 1
    return out


def _key(v: Any) -> Any:
    """A hashable key under which equal categories meet (1 and 1.0 and True stay distinct kinds)."""
    return (type(v).__name__ if not isinstance(v, (int, float)) or isinstance(v, bool) else "num", v)


def _candidates(value: Any) -> list[Any]:
    """A condition value as given and, from the command line's text, as a number or boolean."""
    out = [value]
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "false"):
            out.append(low == "true")
        try:
            f = float(value)
            out += [int(f)] if f.is_integer() else []
            out.append(f)
        except ValueError:
            pass
    return out


def _restore(s: pd.Series, c: dict[str, Any]) -> pd.Series:
    """A discrete/constant column back in its training dtype where the values allow it."""
    dtype = c["dtype"]
    if c.get("bool") and not s.isna().any():
        return s.astype(bool)
    if s.isna().any():
        return s if dtype in ("object", "category", "bool") or dtype.startswith("str") else _nullable(s, dtype)
    try:
        if dtype == "category":
            return s.astype("category")
        if dtype.startswith(("int", "uint", "float", "Int", "Float", "datetime")):
            return s.astype(dtype)
    except (TypeError, ValueError):
        pass
    return s


def _nullable(s: pd.Series, dtype: str) -> pd.Series:
    try:
        if dtype.lower().startswith("int"):
            return s.astype("Int64")
        if dtype.startswith("float"):
            return s.astype("float64")
    except (TypeError, ValueError):
        pass
    return s


def _int_dtype(dtype: str) -> str:
    return dtype if dtype.lower().startswith(("int", "uint")) else "int64"


def _float_dtype(dtype: str) -> str:
    return dtype if dtype.startswith("float") else "float64"


def _common_prefix(values: list[str]) -> str:
    if not values:
        return ""
    lo, hi = min(values), max(values)
    i = 0
    while i < min(len(lo), len(hi)) and lo[i] == hi[i]:
        i += 1
    prefix = lo[:i]
    # A trailing digit run belongs to the counter, not the prefix ("id_0017" -> "id_").
    return prefix.rstrip("0123456789")
