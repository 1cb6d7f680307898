"""Feature store and pipeline together: steps see new feature data; odd columns still ingest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlops_nb import FeatureStore, FeatureView, Pipeline, Store, UnknownViewError
from mlops_nb.hashing import content_hash

from .conftest import Notebook

WANTED = pd.DataFrame({"driver_id": [1], "event_timestamp": ["2024-01-05"]})


@pytest.fixture
def fs(tmp_path: Path) -> FeatureStore:
    fs = FeatureStore(Store(tmp_path / "store"))
    fs.apply(FeatureView("trips", entities=["driver_id"], timestamp="ts"))
    fs.ingest("trips", pd.DataFrame({"driver_id": [1], "ts": ["2024-01-01"], "trips": [3.0]}))
    return fs


def test_a_step_that_read_features_is_stale_after_new_data(fs: FeatureStore) -> None:
    pipe = Pipeline("train", store=fs.store, namespace={"fs": fs, "wanted": WANTED})
    pipe.define_cell("training", "training = fs.get_historical_features(wanted, ['trips:trips'])")
    assert pipe.run_step("training").action == "ran"
    assert pipe.run_step("training").action == "cached"
    assert pipe.lineage("training") == [
        {"kind": "feature_view", "view": "trips", "version": 1, "parts": [1], "features": ["trips"]}
    ]
    fs.ingest("trips", pd.DataFrame({"driver_id": [1], "ts": ["2024-01-04"], "trips": [7.0]}))
    assert pipe.status().loc[0, "state"] == "stale"
    assert pipe.run_step("training").action == "ran"
    assert pipe.namespace["training"]["trips"].tolist() == [7.0]
    assert pipe.lineage("training")[0]["parts"] == [1, 2]


def test_a_feature_store_can_be_passed_between_steps(fs: FeatureStore) -> None:
    assert content_hash(fs) == content_hash(FeatureStore(fs.store.root))
    pipe = Pipeline("pass", store=fs.store, namespace={"root": str(fs.store.root)})
    pipe.define_cell("open", "from mlops_nb import FeatureStore\nstore = FeatureStore(root)")
    pipe.define_cell("views", "views = store.list_views()['view'].tolist()")
    assert pipe.run()["views"] == ["trips"]


def test_mixed_object_columns_are_stored_as_parquet(fs: FeatureStore) -> None:
    fs.apply(FeatureView("flags", entities=["driver_id"], timestamp="ts"))
    fs.ingest("flags", pd.DataFrame({"driver_id": [1, 1], "ts": ["2024-01-01", "2024-01-06"], "vip": [True, None]}))
    result = fs.get_historical_features(WANTED, ["flags:vip"])
    assert result["vip"].tolist() == [True]


def test_a_column_parquet_cannot_hold_is_refused_and_nothing_written(fs: FeatureStore) -> None:
    fs.apply(FeatureView("mixed", entities=["driver_id"], timestamp="ts"))
    bad = pd.DataFrame({"driver_id": [1, 2], "ts": ["2024-01-01"] * 2, "note": [1, "two"]})
    with pytest.raises(ValueError, match=r"cannot be written as Parquet.*Give each column one type"):
        fs.ingest("mixed", bad)
    assert fs.list_views().set_index("view").loc["mixed", "parts"] == 0


def test_remove_forgets_a_view(fs: FeatureStore) -> None:
    fs.remove("trips")
    assert fs.list_views().empty
    with pytest.raises(UnknownViewError, match="No feature view 'trips'"):
        fs.get_online_features([{"driver_id": 1}], ["trips:trips"])


def test_quoted_magic_options_lose_their_quotes(nb: Notebook) -> None:
    nb.ok("import pandas as pd")
    nb.ok(
        '%%features speed --entities car --timestamp ts --description "Speed in km/h"\n'
        "pd.DataFrame({'car': [1], 'ts': ['2024-01-01'], 'kmh': [50.0]})"
    )
    assert FeatureStore().get_view("speed").description == "Speed in km/h"
