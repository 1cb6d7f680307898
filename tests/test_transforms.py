"""TransformRegistry: safe persistence, schema and statistics, skew checks, and %%transform."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from mlops_nb import (
    CorruptObjectError,
    FeatureStore,
    FeatureView,
    LibraryVersionWarning,
    SkewError,
    Store,
    TransformError,
    TransformRegistry,
    UntrustedTypesError,
)

from .conftest import Notebook


def training_data(rows: int = 500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, rows),
            "income": rng.lognormal(10, 0.5, rows),
            "city": rng.choice(["Lyon", "Paris", "Nantes"], rows),
        }
    )


def preprocessor(X: pd.DataFrame) -> ColumnTransformer:
    return ColumnTransformer(
        [("numbers", StandardScaler(), ["age", "income"]), ("city", OneHotEncoder(handle_unknown="ignore"), ["city"])]
    ).fit(X)


def double(x: np.ndarray) -> np.ndarray:
    return x * 2


@pytest.fixture
def registry(tmp_path: Path) -> TransformRegistry:
    return TransformRegistry(Store(tmp_path / "store"))


def test_save_and_load_give_the_same_transform(registry: TransformRegistry) -> None:
    X = training_data()
    fitted = preprocessor(X)
    assert registry.save("prep", fitted, X, tags=["baseline"]) == 1
    assert registry.save("prep", fitted, X) == 2
    loaded = registry.load("prep")
    np.testing.assert_array_equal(loaded.transform(X), fitted.transform(X))
    info = registry.info("prep", version=1)
    assert info["schema"] == {"age": "float64", "income": "float64", "city": "str"}
    assert len(info["stats"]["age"]["quantiles"]) == 11
    assert set(info["stats"]["city"]["frequencies"]) == {"Lyon", "Paris", "Nantes"}
    assert info["libraries"]["sklearn"] and info["tags"] == ["baseline"]
    assert list(registry.versions("prep")["version"]) == [1, 2]
    assert registry.list().to_dict("records") == [
        {"name": "prep", "latest": 2, "type": "ColumnTransformer", "source": ""}
    ]


def test_an_unfitted_transformer_is_refused(registry: TransformRegistry) -> None:
    with pytest.raises(TransformError, match=r"StandardScaler is not fitted.*Fit it first"):
        registry.save("scaler", StandardScaler())
    assert registry.list().empty


def test_unknown_names_and_versions_are_explained(registry: TransformRegistry) -> None:
    X = training_data()
    registry.save("scaler", StandardScaler().fit(X[["age"]]))
    with pytest.raises(TransformError, match=r"No transform named 'scalar'. Did you mean 'scaler'\?"):
        registry.load("scalar")
    with pytest.raises(TransformError, match=r"has no version 7; it has \[1\]"):
        registry.load("scaler", version=7)
    with pytest.raises(ValueError, match="Invalid transform name"):
        registry.save("../up", StandardScaler().fit(X[["age"]]))


def test_untrusted_types_are_refused_until_trusted(registry: TransformRegistry) -> None:
    custom = FunctionTransformer(double).fit(np.ones((3, 1)))
    registry.save("doubler", custom)
    name = f"{__name__}.double"
    with pytest.raises(UntrustedTypesError, match=rf"\['{name}'\].*trusted=\['{name}'\]"):
        registry.load("doubler")
    loaded = registry.load("doubler", trusted=[name])
    assert loaded.transform(np.ones((1, 1))).tolist() == [[2.0]]


def test_the_trust_list_is_never_inside_the_file(registry: TransformRegistry) -> None:
    registry.save("doubler", FunctionTransformer(double).fit(np.ones((3, 1))))
    registry.load("doubler", trusted=[f"{__name__}.double"])
    data = registry.store.get(registry.info("doubler")["sha256"])
    assert b"trusted" not in data
    assert skops.io.get_untrusted_types(data=data) == [f"{__name__}.double"]
    with pytest.raises(UntrustedTypesError):  # trusting it once is not remembered
        registry.load("doubler")


def test_a_tampered_file_is_not_loaded(registry: TransformRegistry) -> None:
    X = training_data()
    registry.save("prep", preprocessor(X), X)
    sha256 = registry.info("prep")["sha256"]
    [path] = (registry.store.root / "objects").glob(f"*/{sha256}.bin")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptObjectError, match=rf"{sha256}\.bin.*transform 'prep' v1 is corrupt"):
        registry.load("prep")


def test_other_library_versions_give_a_warning(registry: TransformRegistry) -> None:
    X = training_data()
    registry.save("prep", preprocessor(X), X)
    with registry.store.transaction() as db:
        db.execute(
            "UPDATE transforms SET record = json_set(record, '$.libraries.sklearn', '0.1') WHERE name = 'prep'"
        )
    with pytest.warns(LibraryVersionWarning, match=r"sklearn 0\.1 -> "):
        registry.load("prep")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry.save("prep", preprocessor(X), X)
        registry.load("prep")  # the new version matches: no warning


def test_check_skew_reports_schema_changes_psi_and_new_categories(registry: TransformRegistry) -> None:
    X = training_data()
    registry.save("prep", preprocessor(X), X)
    same = registry.check_skew("prep", training_data(seed=1)).set_index("column")
    assert (same["status"] == "ok").all()
    assert same.loc["age", "psi"] < 0.1 and same.loc["age", "drift"] == "stable"

    drifted = training_data(seed=2)
    drifted["age"] = drifted["age"] + 15
    drifted["city"] = drifted["city"].replace({"Nantes": "Lille"})
    drifted = drifted.drop(columns=["income"]).assign(extra=1)
    report = registry.check_skew("prep", drifted).set_index("column")
    assert report.loc["age", "psi"] > 0.25 and report.loc["age", "drift"] == "real shift"
    assert report.loc["income", "status"] == "missing"
    assert report.loc["extra", "status"] == "extra"
    assert report.loc["city", "new categories"] == "Lille"
    with pytest.raises(SkewError, match=r"age: PSI \d\.\d\d; income: missing"):
        registry.check_skew("prep", drifted, raise_on=0.25)


def test_check_skew_notices_a_changed_dtype(registry: TransformRegistry) -> None:
    X = training_data()
    registry.save("prep", preprocessor(X), X)
    serving = training_data(seed=1).assign(age=lambda d: d["age"].round().astype(int).astype(str))
    report = registry.check_skew("prep", serving).set_index("column")
    assert report.loc["age", "status"] == "dtype changed"
    with pytest.raises(TransformError, match="saved without its training data"):
        registry.save("bare", StandardScaler().fit(X[["age"]]))
        registry.check_skew("bare", X)


def test_plot_skew_draws_one_bar_per_numeric_column(registry: TransformRegistry) -> None:
    import matplotlib

    matplotlib.use("Agg")
    X = training_data()
    registry.save("prep", preprocessor(X), X)
    figure = registry.plot_skew("prep", training_data(seed=3).assign(age=lambda d: d["age"] * 2))
    [axes] = figure.axes
    assert [label.get_text() for label in axes.get_yticklabels()] == ["age", "income"]
    assert axes.patches[0].get_width() > 0.25


def test_lineage_of_a_training_set_is_recorded(registry: TransformRegistry) -> None:
    fs = FeatureStore(registry.store)
    fs.apply(FeatureView("people", entities=["id"], timestamp="ts"))
    fs.ingest("people", pd.DataFrame({"id": [1, 2], "ts": ["2024-01-01"] * 2, "age": [30.0, 40.0]}))
    train = fs.get_historical_features(
        pd.DataFrame({"id": [1, 2], "event_timestamp": ["2024-02-01"] * 2}), ["people:age"]
    )
    registry.save("age_scaler", StandardScaler().fit(train[["age"]]), train[["age"]], source=train)
    source = registry.info("age_scaler")["source"]
    assert source["kind"] == "training_set" and source["rows"] == 2
    assert source["feature_views"][0]["view"] == "people"
    assert registry.versions("age_scaler").loc[0, "source"] == "training set (2 rows) from people v1"
    registry.save("age_scaler", StandardScaler().fit(train[["age"]]), source="step:features")
    assert registry.info("age_scaler")["source"] == {"kind": "pipeline_step", "step": "features"}


def test_transform_magic_saves_the_cells_value(nb: Notebook) -> None:
    nb.ok("import pandas as pd\nfrom sklearn.preprocessing import StandardScaler")
    nb.ok("X = pd.DataFrame({'age': [20.0, 30.0, 40.0]})")
    result = nb.ok("%%transform age_scaler --data X --source step:load --tags first\nStandardScaler().fit(X)")
    assert result.success
    registry = TransformRegistry()
    assert registry.info("age_scaler")["schema"] == {"age": "float64"}
    assert registry.info("age_scaler")["tags"] == ["first"]
    assert "StandardScaler is not fitted" in str(nb.error("%%transform s\nStandardScaler()"))
    assert "'nope', which is not defined" in str(nb.error("%%transform s --data nope\nStandardScaler().fit(X)"))
    assert "end with the fitted transformer" in str(nb.error("%%transform s\nx = 1"))


def test_a_column_of_arrays_is_not_treated_as_categories(registry: TransformRegistry) -> None:
    X = pd.DataFrame({"photo": [np.zeros((2, 2)), np.ones((2, 2))], "age": [30.0, 40.0]})
    registry.save("prep", StandardScaler().fit(X[["age"]]), X)
    assert registry.info("prep")["stats"]["photo"] == {"cells": "arrays", "nulls": 0}
    report = registry.check_skew("prep", X).set_index("column")
    assert report.loc["photo", "status"] == "ok" and report.loc["photo", "new categories"] == ""


def test_psi_of_a_count_column_against_itself_is_zero(registry: TransformRegistry) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"calls": rng.poisson(1.5, 3000)})
    registry.save("calls", StandardScaler().fit(X), X)
    same = registry.check_skew("calls", X).set_index("column")
    assert same.loc["calls", "psi"] < 1e-9
    more = registry.check_skew("calls", pd.DataFrame({"calls": rng.poisson(4, 3000)})).set_index("column")
    assert more.loc["calls", "psi"] > 0.25
