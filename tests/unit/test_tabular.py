"""Tables: every transformer case, training-by-sampling, CTGAN's terms, the TabularGAN/VAE API."""
from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import ganforge
from ganforge.nn.tabular import SegmentSoftmax
from ganforge.objectives.auxiliary import ConditionalCrossEntropy
from ganforge.objectives.regularizers import GradientPenalty
from ganforge.registry import ConfigError
from ganforge.tabular import TableData, TableTransformer, TabularGAN, TabularVAE, detect_discrete

SMALL = dict(batch_size=20, pac=2, embedding_dim=16, generator_dim=(32,), discriminator_dim=(32,), progress=False)


def _table(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "x": np.where(rng.random(n) < 0.5, rng.normal(-3, 0.3, n), rng.normal(4, 0.5, n)),
        "count": rng.integers(0, 1000, n),
        "kind": rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1]),
        "flag": rng.random(n) < 0.3,
    })


def _roundtrip(df: pd.DataFrame, discrete: list[str] | None = None,
               **kw: object) -> tuple[TableTransformer, pd.DataFrame]:
    t = TableTransformer(**kw).fit(df, discrete)
    x = t.transform(df)
    assert x.shape == (len(df), t.width) and t.width == sum(s.width for s in t.spans)
    return t, t.inverse_transform(x)


def _kinds(t: TableTransformer) -> dict[str, str]:
    return {c["name"]: c["kind"] for c in t.columns}


# ---------------------------------------------------------------------------------------------- transformer


def test_continuous_mode_specific_normalization_round_trips():
    df = _table(400)
    t, back = _roundtrip(df[["x"]])
    c = t.columns[0]
    assert c["kind"] == "continuous" and 2 <= len(c["means"]) <= 10
    assert [s.activation for s in t.spans] == ["tanh", "softmax"]
    # Values within 4 sigma of their mode come back (up to float32); both modes are found.
    assert np.mean(np.abs(back["x"] - df["x"]) < 1e-3) > 0.99
    assert back["x"].dtype == np.float64


def test_samples_stay_inside_the_observed_range_and_integers_stay_integers():
    df = _table(300)
    t = TableTransformer().fit(df, ["kind", "flag"])
    raw = torch.rand(1000, t.width) * 2 - 1  # arbitrary outputs, far outside what G learns
    out = t.inverse_transform(raw)
    assert out["x"].between(df["x"].min(), df["x"].max()).all()
    assert out["count"].between(df["count"].min(), df["count"].max()).all()
    assert out["count"].dtype == df["count"].dtype and (out["count"] % 1 == 0).all()
    assert set(out["kind"]) <= {"a", "b", "c"} and out["flag"].dtype == bool


def test_whole_number_floats_come_back_whole():
    df = pd.DataFrame({"age": np.random.default_rng(0).integers(18, 90, 300).astype(float)})
    t, back = _roundtrip(df)
    assert t.columns[0]["integer"] and back["age"].dtype == np.float64 and (back["age"] % 1 == 0).all()


def test_datetimes_and_dates_round_trip():
    rng = np.random.default_rng(1)
    stamps = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.uniform(0, 3e7, 300), unit="s")
    days = pd.Timestamp("2021-06-01") + pd.to_timedelta(rng.integers(0, 400, 300), unit="D")
    objects = [d.date() for d in days]
    df = pd.DataFrame({"when": stamps, "day": days, "date": pd.Series(objects, dtype=object)})
    t, back = _roundtrip(df)
    assert _kinds(t) == {"when": "continuous", "day": "continuous", "date": "continuous"}
    assert pd.api.types.is_datetime64_any_dtype(back["when"])
    assert (back["when"] - df["when"]).abs().dt.total_seconds().median() < 60
    assert (back["day"] == back["day"].dt.normalize()).all()  # dates stay dates
    assert all(isinstance(v, dt.date) and not isinstance(v, dt.datetime) for v in back["date"])
    assert np.mean([a == b for a, b in zip(back["date"], objects, strict=True)]) > 0.95


def test_missing_values_are_learned_as_their_own_output():
    df = _table(300)
    df.loc[::4, "x"] = np.nan
    df.loc[1::5, "kind"] = None
    t, back = _roundtrip(df, ["kind", "flag"])
    assert [s.activation for s in t.spans[:3]] == ["tanh", "softmax", "softmax"] and t.spans[2].width == 2
    assert back["x"].isna().equals(df["x"].isna())
    assert back["kind"].isna().equals(df["kind"].isna())
    assert None in t.columns[2]["categories"]


def test_constant_and_all_missing_columns_take_no_span():
    df = pd.DataFrame({"x": np.arange(50.0), "same": ["k"] * 50, "nothing": [np.nan] * 50})
    t, back = _roundtrip(df)
    assert _kinds(t) == {"x": "continuous", "same": "constant", "nothing": "constant"}
    assert (back["same"] == "k").all() and back["nothing"].isna().all()


def test_booleans_stay_booleans():
    df = _table(100)[["flag"]]
    t, back = _roundtrip(df)
    assert _kinds(t) == {"flag": "discrete"} and back["flag"].dtype == bool
    assert back["flag"].equals(df["flag"])


def test_id_like_columns_are_not_modelled_and_come_back_unique():
    n = 500
    df = pd.DataFrame({"user": [f"U{i:05d}" for i in range(n)], "row": np.arange(1000, 1000 + n),
                       "v": np.random.default_rng(0).normal(size=n)})
    t = TableTransformer().fit(df, ["user"])
    assert _kinds(t) == {"user": "id", "row": "id", "v": "continuous"}
    assert t.width == sum(s.width for s in t.spans) < 20  # no 500-wide one-hot
    out = t.inverse_transform(t.transform(df))
    assert out["user"].is_unique and out["user"].str.startswith("U").all()
    assert out["row"].is_unique and out["row"].dtype == df["row"].dtype


def test_high_cardinality_columns_pool_their_rare_values():
    rng = np.random.default_rng(0)
    values = [f"city{int(v)}" for v in rng.zipf(1.5, 3000) % 2000]
    df = pd.DataFrame({"city": values})
    t = TableTransformer(max_categories=50).fit(df, ["city"])
    c = t.columns[0]
    assert c["kind"] == "discrete" and len(c["categories"]) == 50 and c["pooled"]
    out = t.inverse_transform(t.transform(df))
    # Rows in the pool come back as pooled values, never as the pool's placeholder.
    assert "__other__" not in set(out["city"]) and set(out["city"]) <= set(values)


def test_discrete_columns_are_detected():
    df = _table(100)
    df["small_int"] = np.arange(100) % 4
    df["cat"] = pd.Categorical(["u", "v"] * 50)
    assert set(detect_discrete(df)) == {"kind", "flag", "small_int", "cat"}


def test_the_fitted_transformer_is_plain_json():
    df = _table(200)
    df.loc[::7, "x"] = np.nan
    t = TableTransformer(seed=3).fit(df)
    again = TableTransformer.from_config(json.loads(json.dumps(t.config())))
    x = t.transform(df)
    pd.testing.assert_frame_equal(again.inverse_transform(x), t.inverse_transform(x))


def test_fitting_is_seeded_and_bounded():
    df = pd.DataFrame({"x": np.random.default_rng(0).normal(size=3000)})
    a, b = TableTransformer(seed=1, max_fit_rows=500).fit(df), TableTransformer(seed=1, max_fit_rows=500).fit(df)
    assert a.columns == b.columns
    assert torch.equal(a.transform(df), b.transform(df))


def test_bad_tables_are_one_line_errors():
    with pytest.raises(ConfigError, match="at least 2 rows"):
        TableTransformer().fit(pd.DataFrame({"x": [1.0]}))
    with pytest.raises(ConfigError, match="not in the table"):
        TableTransformer().fit(_table(10), ["nope"])


# ---------------------------------------------------------------------------------------------- CTGAN's parts


def _data(df: pd.DataFrame, discrete: list[str]) -> TableData:
    t = TableTransformer().fit(df, discrete)
    codes = np.stack([t.codes(c, df[c["name"]]) for c in t.discrete_columns()], axis=1)
    return TableData(t.transform(df), codes, t.discrete_layout(), t.spans, transform=t)


def test_training_by_sampling_draws_categories_at_log_frequency_and_matching_rows():
    df = pd.DataFrame({"kind": ["a"] * 900 + ["b"] * 90 + ["c"] * 10, "x": np.arange(1000.0)})
    data = _data(df, ["kind"])
    batch = data.batch(20000, torch.Generator().manual_seed(0))
    freq = batch["c"].mean(0).numpy()
    logf = np.log1p([900, 90, 10])
    np.testing.assert_allclose(freq, logf / logf.sum(), atol=0.015)  # the rare 'c' is drawn often
    start, width, c_start = data.spec.extra["condition_spans"][0]
    # Every real row drawn holds the category its condition names.
    assert torch.equal(batch["x"][:, start:start + width], batch["c"][:, c_start:c_start + width])
    assert data.spec.condition_dim == 3 and data.fake_conditions(5)["c"].shape == (5, 3)


def test_conditional_cross_entropy_is_the_masked_per_column_cross_entropy():
    torch.manual_seed(0)
    spans = [[0, 3, 0], [5, 2, 3]]  # two discrete columns at outputs 0..2 and 5..6
    logits = torch.randn(8, 7)
    c = torch.zeros(8, 5)
    col = torch.randint(2, (8,))
    for i in range(8):
        c[i, int(torch.randint(3, ())) if col[i] == 0 else 3 + int(torch.randint(2, ()))] = 1
    loss, _ = ConditionalCrossEntropy(spans)({"logits": logits, "c": c})
    expected = 0.0
    for i in range(8):
        a, w, cs = spans[int(col[i])]
        expected += F.cross_entropy(logits[i:i + 1, a:a + w], c[i:i + 1, cs:cs + w].argmax(1))
    assert torch.allclose(loss, expected / 8, atol=1e-6)


def test_segment_softmax_equals_a_softmax_per_span():
    spans = [(0, 3), (3, 4), (7, 1), (8, 5)]
    v = torch.randn(6, 13)
    s = SegmentSoftmax(spans)
    out = s(v[:, s.idx])
    ref = torch.cat([torch.softmax(v[:, a:b], 1) for a, b in spans], 1)
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(s(v[:, s.idx], log=True), ref.log(), atol=1e-5)


def test_gradient_penalty_per_pack():
    torch.manual_seed(0)
    d = torch.nn.Sequential(torch.nn.Flatten(0), torch.nn.Unflatten(0, (3, 8)), torch.nn.Linear(8, 1))
    real, fake = torch.randn(6, 4), torch.randn(6, 4)
    pen = GradientPenalty(10.0, pack=2).penalty(d, real, fake, generator=torch.Generator().manual_seed(5))
    eps = torch.rand((3, 1), generator=torch.Generator().manual_seed(5)).repeat_interleave(2, 0)
    x = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(d(x).sum(), x)
    assert torch.allclose(pen, 10 * ((g.reshape(3, -1).norm(dim=1) - 1) ** 2).mean())


# ---------------------------------------------------------------------------------------------- the API


def test_same_seed_same_model_same_samples():
    df = _table(120)
    a = TabularGAN(epochs=2, seed=4, **SMALL).fit(df)
    b = TabularGAN(epochs=2, seed=4, **SMALL).fit(df)
    c = TabularGAN(epochs=2, seed=5, **SMALL).fit(df)
    for k, v in a.artifact.module.state_dict().items():
        assert torch.equal(v, b.artifact.module.state_dict()[k]), k
    pd.testing.assert_frame_equal(a.sample(50, seed=1), b.sample(50, seed=1))
    assert not a.sample(50, seed=1).equals(c.sample(50, seed=1))
    assert not a.sample(50, seed=1).equals(a.sample(50, seed=2))


def test_the_condition_steers_the_generator_before_any_rejection():
    # sample(conditions=...) rejects the rows that miss and draws again, so its rows match whatever G
    # does: here G's own hit rate (rows drawn with the condition vector, none rejected) is compared
    # with the value's rate in unconditional samples. A G that ignores its condition scores its base
    # rate (measured with the condition input zeroed: kind=c 0.14-0.20 against 0.12-0.20, flag 0.32-0.44
    # against 0.32-0.45); trained, it hit kind=c 0.79-0.93 against 0.07-0.10, flag 0.93-0.98 against
    # 0.27-0.34 over seeds 0-7.
    model = TabularGAN(epochs=20, lr=2e-3, **SMALL).fit(_table(200))
    t = model.transformer
    assert t is not None
    for column, value in (("kind", "c"), ("flag", True)):
        cond = t.condition_vectors(1000, fixed=t.condition_index(column, value))
        hit = (model.artifact.sample(1000, seed=1, condition=cond)[column] == value).mean()
        base = (model.sample(1000, seed=2)[column] == value).mean()
        assert hit > 0.6 and hit > base + 0.4, (column, value, hit, base)


def test_conditions_save_and_load(tmp_path):
    df = _table(120)
    model = TabularGAN(epochs=2, **SMALL).fit(df)
    # The rejection contract (every row matches, after redraws); G's own steering is tested above.
    rows = model.sample(30, conditions={"kind": "c", "flag": "true"})
    assert len(rows) == 30 and (rows["kind"] == "c").all() and rows["flag"].all()
    model.save(tmp_path / "model.safetensors")
    loaded = ganforge.load(tmp_path / "model.safetensors")
    pd.testing.assert_frame_equal(loaded.sample(40, seed=3), model.sample(40, seed=3))
    with pytest.raises(ConfigError, match="no such value"):
        model.sample(5, conditions={"kind": "zzz"})
    with pytest.raises(ConfigError, match="discrete columns"):
        model.sample(5, conditions={"x": 1})


def test_resume_continues_the_fit_exactly(tmp_path):
    df = _table(120)
    straight = TabularGAN(epochs=4, checkpoint_every=1, **SMALL).fit(df, out=tmp_path / "a")
    TabularGAN(epochs=2, checkpoint_every=1, **SMALL).fit(df, out=tmp_path / "b")
    resumed = TabularGAN(epochs=4, checkpoint_every=1, **SMALL).fit(df, out=tmp_path / "b", resume=True)
    assert resumed.summary["steps"] == straight.summary["steps"]
    for k, v in straight.artifact.module.state_dict().items():
        assert torch.allclose(v, resumed.artifact.module.state_dict()[k]), k
    with pytest.raises(ConfigError, match="already holds a run"):
        TabularGAN(epochs=1, **SMALL).fit(df, out=tmp_path / "a")


def test_quality_is_scored_the_best_is_kept_and_training_stops_early(tmp_path, monkeypatch):
    import ganforge.tabular.model as model_module

    scores = iter([0.5, 0.7, 0.6, 0.55, 0.9, 0.95])
    monkeypatch.setattr(model_module, "quality_score", lambda real, synth, kinds: next(scores))
    df = _table(120)
    model = TabularGAN(epochs=10, quality_every=1, patience=2, **SMALL).fit(df, out=tmp_path / "run")
    # Scores 0.5, 0.7 (best, epoch 2), 0.6, 0.55: two without improvement -> stop after epoch 4.
    assert model.summary["steps"] == 4 * 6 and model.summary["best_epoch"] == 2
    assert "did not improve" in model.summary["stopped_early"]
    assert (tmp_path / "run" / "best.safetensors").is_file()
    assert model.quality is not None
    best = model.quality.best_state
    assert best is not None
    for k, v in model.artifact.module.state_dict().items():
        assert torch.equal(v, best[k])
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["eval/quality"] for r in log if "eval/quality" in r] == [0.5, 0.7, 0.6, 0.55]


def test_missing_values_survive_fit_and_sample():
    df = _table(200)
    df.loc[::3, "x"] = np.nan
    df.loc[::5, "kind"] = None
    out = TabularGAN(epochs=20, **SMALL).fit(df).sample(1000)
    # Missing values come back (CTGAN #413: NaN accepted by fit, then sample breaks), near their
    # observed rates (1/3 and 1/5) as far as 200 steps of a tiny model on 200 rows learn them.
    assert 0.15 < out["x"].isna().mean() < 0.6 and 0.05 < out["kind"].isna().mean() < 0.4
    assert out["x"].notna().any()
    assert set(out["kind"].dropna()) <= {"a", "b", "c"}


def test_tvae_fits_without_conditions_or_discriminator():
    df = _table(100)
    model = TabularVAE(epochs=2, batch_size=20, embedding_dim=8, generator_dim=(16,), progress=False).fit(df)
    assert model.result is not None and model.result.parts.discriminator is None
    assert model.result.parts.spec.condition_dim == 0
    assert list(model.sample(10).columns) == list(df.columns)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="multiple of pac"):
        TabularGAN(batch_size=25, pac=10)
    with pytest.raises(ConfigError, match="positive"):
        TabularGAN(epochs=0)


def test_nullable_dtypes_single_values_with_missing_and_time_zones():
    n = 120
    rng = np.random.default_rng(0)
    df = pd.DataFrame({
        "small": pd.array(rng.integers(0, 4, n), dtype="Int64"),  # discrete, nullable integer
        "big": pd.array(rng.integers(0, 10_000, n) * 3, dtype="Int64"),  # continuous, nullable integer
        "ok": pd.array([True, False, None] * (n // 3), dtype="boolean"),
        "yes": ["yes", None] * (n // 2),  # one value and missing ones
        "when": pd.date_range("2024-01-01", periods=n, freq="h", tz="Europe/Paris"),
    })
    df.loc[3, "small"] = pd.NA
    t = TableTransformer().fit(df)
    json.dumps(t.config())  # pd.NA is stored as null
    assert _kinds(t)["yes"] == "discrete" and t.columns[list(df.columns).index("small")]["kind"] == "discrete"
    x = t.transform(df)
    back = t.inverse_transform(x)
    assert back["small"].isna().sum() == 1 and pd.isna(back.loc[3, "small"])
    assert back["big"].dtype == "Int64" and back["ok"].isna().equals(df["ok"].isna())
    assert back["yes"].isna().equals(df["yes"].isna())
    assert str(back["when"].dt.tz) == "Europe/Paris"
    assert (back["when"] - df["when"]).abs().max() < pd.Timedelta("1min")


def test_conditional_rows_keep_unique_ids_and_the_penalty_interpolates_conditions():
    df = _table(120)
    df["user"] = [f"u{i:04d}" for i in range(120)]
    model = TabularGAN(epochs=1, **SMALL).fit(df, discrete_columns=["kind", "flag", "user"])
    rows = model.sample(100, conditions={"kind": "c"})
    assert rows["user"].is_unique
    assert model.result is not None
    (gp,) = model.result.parts.objective.penalties
    assert gp.pack == 2 and gp.interpolate_condition
    with pytest.raises(ConfigError, match="pac"):
        TabularGAN(batch_size=20, pac=0)
