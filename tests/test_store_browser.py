"""StoreBrowser: tabs over a real store, a step's code on choosing it, and a stable plain text."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import ipywidgets as w
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.preprocessing import StandardScaler

from mlops_nb import FeatureStore, FeatureView, Pipeline, Store, TransformError, TransformRegistry
from mlops_nb.plots import feature_distributions
from mlops_nb.widgets.store_browser import StoreBrowser

X_FIT = pd.DataFrame({"age": np.arange(100.0), "plan": ["basic", "premium"] * 50})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A store holding a pipeline that ran, a feature view with two versions and a transform."""
    store = Store(tmp_path / "store")
    wine = Pipeline("wine", store)
    wine.define_cell("load", "raw = [3, 1, 2]")
    wine.define_cell("total", "total = sum(raw)  # adds up")
    wine.run()
    Pipeline("tiny", store).define_cell("only", "one = 1")
    fs = FeatureStore(store)
    fs.apply(FeatureView("cars", entities=["car"], timestamp="ts"))
    fs.ingest(
        "cars",
        pd.DataFrame({"car": [1, 2, 3], "ts": ["2024-01-01"] * 3, "kmh": [50.0, 70.0, 90.0]}),
    )
    fs.apply(
        FeatureView(
            "cars", entities=["car"], timestamp="ts", schema={"kmh": "float64", "doors": "int64"}
        )
    )
    registry = TransformRegistry(store)
    scaler = StandardScaler().fit(X_FIT[["age"]])
    registry.save("scaler", scaler, X_FIT, tags=["lesson"])
    registry.save("scaler", scaler, X_FIT)
    return store


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def walk(widget: w.Widget) -> Iterator[w.Widget]:
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


def dropdown(widget: w.Widget, description: str) -> w.Dropdown:
    return next(
        d for d in walk(widget) if isinstance(d, w.Dropdown) and d.description == description
    )


def shown_html(widget: w.Widget) -> str:
    return "\n".join(h.value for h in walk(widget) if isinstance(h, w.HTML))


def images(widget: w.Widget) -> list[bytes]:
    return [bytes(image.value) for image in walk(widget) if isinstance(image, w.Image)]


# -- plain text -----------------------------------------------------------------------------------
def test_the_text_lists_what_the_store_holds(store: Store) -> None:
    assert StoreBrowser(store).text() == (
        "mlops_nb store\n"
        "  pipelines (2):\n"
        "    tiny    1 step\n"
        "    wine    2 steps\n"
        "  feature views (1):\n"
        "    cars    v1, v2\n"
        "  transforms (1):\n"
        "    scaler  v1, v2"
    )


def test_an_empty_store_says_how_to_start(tmp_path: Path) -> None:
    assert repr(StoreBrowser(tmp_path)) == "mlops_nb store: nothing stored yet; run a %%step cell."


def test_the_mime_bundle_is_the_widget_with_the_stable_text(store: Store) -> None:
    browser = StoreBrowser(store)
    bundle = browser._repr_mimebundle_()
    assert bundle["text/plain"] == browser.text() == repr(browser)
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == browser.widget.model_id


def test_a_path_or_the_default_store_works_too(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert StoreBrowser(store.root).text() == StoreBrowser(store).text()
    monkeypatch.setenv("MLOPS_NB_HOME", str(store.root))
    assert StoreBrowser().text() == StoreBrowser(store).text()


# -- the tabs -------------------------------------------------------------------------------------
def test_three_tabs(store: Store) -> None:
    tab = StoreBrowser(store).widget
    assert isinstance(tab, w.Tab)
    assert tab.titles == ("Pipelines", "Feature views", "Transforms")


def test_choosing_a_pipeline_shows_its_status(store: Store) -> None:
    pipelines = StoreBrowser(store).widget.children[0]
    chooser = dropdown(pipelines, "pipeline")
    assert chooser.options == ("tiny", "wine")
    assert "never run" in shown_html(pipelines)
    chooser.value = "wine"
    page = shown_html(pipelines)
    assert "<td>total</td>" in page and "up to date" in page and "never run" not in page
    assert dropdown(pipelines, "step").options == ("load", "total")


def test_choosing_a_step_shows_its_code_inputs_outputs_and_last_run(store: Store) -> None:
    pipelines = StoreBrowser(store).widget.children[0]
    dropdown(pipelines, "pipeline").value = "wine"
    dropdown(pipelines, "step").value = "total"
    page = shown_html(pipelines)
    assert ">total = sum(raw)  # adds up</pre>" in page
    assert "<b>reads</b>: raw" in page and "<b>outputs</b>: total" in page
    assert "<b>runs after</b>: load" in page
    assert "last action: ran," in page


def test_choosing_a_view_version_shows_its_statistics_and_distributions(store: Store) -> None:
    views = StoreBrowser(store).widget.children[1]
    assert dropdown(views, "view").options == ("cars",)
    version = dropdown(views, "version")
    assert (version.options, version.value) == ((1, 2), 2)
    assert "No data ingested into this version yet" in shown_html(views)
    version.value = 1
    page = shown_html(views)
    assert "<b>features</b>: kmh" in page and "<td>kmh</td>" in page
    assert images(views) == [png(feature_distributions(FeatureStore(store), "cars", version=1))]


def test_choosing_a_transform_shows_what_was_saved_with_it(store: Store) -> None:
    transforms = StoreBrowser(store).widget.children[2]
    version = dropdown(transforms, "version")
    assert (version.options, version.value) == ((1, 2), 2)
    version.value = 1
    page = shown_html(transforms)
    assert "<b>type</b>: sklearn.preprocessing._data.StandardScaler" in page
    assert "<b>tags</b>: lesson" in page and "sklearn " in page
    assert "<td>age</td>" in page and "basic 50%, premium 50%" in page
    assert "Skew" not in page and not images(transforms)


def test_serving_data_adds_a_skew_report(store: Store) -> None:
    shifted = X_FIT.assign(age=X_FIT["age"] + 60)
    transforms = StoreBrowser(store, serving={"scaler": shifted}).widget.children[2]
    page = shown_html(transforms)
    assert "Skew of the serving data" in page and "real shift" in page
    assert images(transforms) == [png(TransformRegistry(store).plot_skew("scaler", shifted))]


def test_serving_data_for_an_unknown_transform_is_refused(store: Store) -> None:
    with pytest.raises(TransformError, match=r"serving names 'scalar'.* Did you mean 'scaler'\?"):
        StoreBrowser(store, serving={"scalar": X_FIT})


def test_empty_tabs_say_how_to_fill_them(tmp_path: Path) -> None:
    tab = StoreBrowser(tmp_path).widget
    assert [shown_html(child) for child in tab.children] == [
        "<i>No pipelines yet: run a %%step cell.</i>",
        "<i>No feature views yet: apply one and ingest data, or run a %%features cell.</i>",
        "<i>No transforms yet: TransformRegistry().save(...), or a %%transform cell.</i>",
    ]


def test_importing_it_loads_neither_ipywidgets_nor_matplotlib() -> None:
    code = (
        "import sys, mlops_nb.widgets.store_browser; "
        "print(sorted({'ipywidgets', 'matplotlib'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_a_transform_saved_without_its_data_says_so(store: Store) -> None:
    TransformRegistry(store).save("bare", StandardScaler().fit(X_FIT[["age"]]))
    transforms = StoreBrowser(store, serving={"bare": X_FIT}).widget.children[2]
    dropdown(transforms, "transform").value = "bare"
    page = shown_html(transforms)
    assert "Saved without its training data: no schema or fit-time statistics." in page
    assert "nothing to compare with" in page and not images(transforms)


def test_browse_magic_opens_the_notebook_store(nb: Any) -> None:
    nb.ok("%%step numbers\nnumbers = [1, 2, 3]")
    nb.ok("browser = %browse")
    assert nb.ns["browser"].text() == "mlops_nb store\n  pipelines (1):\n    default  1 step\n  feature views: none\n  transforms: none"
    assert "%browse takes no arguments, got 'views'" in str(nb.error("%browse views"))
