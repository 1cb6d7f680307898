"""An ipywidgets browser of a store: pipelines and steps, feature views, saved transforms."""

from __future__ import annotations

import functools
import html
import importlib.util
import io
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..display import STATE_COLOURS
from ..errors import did_you_mean
from ..features import FeatureStore
from ..pipeline import Pipeline
from ..store import Store
from ..transforms import TransformError, TransformRegistry

if TYPE_CHECKING:
    import ipywidgets
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["StoreBrowser"]

EMPTY_STORE = "nothing stored yet; run a %%step cell"


class StoreBrowser:
    """Three tabs to look around a store: pipelines and steps, feature views, transforms.

    Choose a pipeline to see its status table, then a step to see its code, what it reads and
    outputs, and how it last ran. Choose a feature view and a version to see its statistics and
    a histogram per feature. Choose a transform and a version to see what was saved with it:
    schema, fit-time statistics, library versions, tags, and, for the transforms named in
    ``serving``, a skew report of that data against the fit-time statistics.

    The widget shows the store as it was when it was first displayed: display a new browser to
    see later changes. Its plain-text form, :meth:`text`, lists what the store holds, without
    paths or timings, so that it reads the same in every run.

    Parameters
    ----------
    store : Store, path or None
        The store to browse; default ``Store()`` (``$MLOPS_NB_HOME`` or ``./.mlops_nb``).
    serving : dict of str to DataFrame, optional
        Serving data per transform name, to check for skew in the Transforms tab.

    Examples
    --------
    >>> import tempfile
    >>> from mlops_nb import Pipeline, Store
    >>> store = Store(tempfile.mkdtemp())
    >>> StoreBrowser(store)
    mlops_nb store: nothing stored yet; run a %%step cell.
    >>> _ = Pipeline("demo", store).define_cell("load", "numbers = [1, 2, 3]")
    >>> print(StoreBrowser(store).text())
    mlops_nb store
      pipelines (1):
        demo  1 step
      feature views: none
      transforms: none
    """

    def __init__(
        self,
        store: Store | str | os.PathLike[str] | None = None,
        serving: Mapping[str, Any] | None = None,
    ) -> None:
        self.store = Store.at(store)
        self.features = FeatureStore(self.store)
        self.transforms = TransformRegistry(self.store)
        self.serving = dict(serving or {})
        known = self._transform_versions()
        for name in self.serving:
            if name not in known:
                raise TransformError(
                    f"serving names {name!r}, which is not a saved transform."
                    f"{did_you_mean(name, known)} "
                    f"Saved transforms: {', '.join(known) or 'none yet'}."
                )

    # -- what the store holds ------------------------------------------------------------------
    def _view_versions(self) -> dict[str, list[int]]:
        # A view's versions are numbered 1, 2, ... up to the latest: apply never skips one.
        views = self.features.list_views()
        return {
            name: list(range(1, latest + 1))
            for name, latest in zip(views["view"], views["version"])
        }

    def _transform_versions(self) -> dict[str, list[int]]:
        return {
            name: self.transforms.versions(name)["version"].tolist()
            for name in self.transforms.list()["name"]
        }

    # -- plain text ----------------------------------------------------------------------------
    def text(self) -> str:
        """What the store holds: pipelines with step counts, views and transforms with versions."""
        sections = {
            "pipelines": {
                name: _count(steps, "step") for name, steps in Pipeline.stored(self.store).items()
            },
            "feature views": {name: _versions(v) for name, v in self._view_versions().items()},
            "transforms": {name: _versions(v) for name, v in self._transform_versions().items()},
        }
        if not any(sections.values()):
            return f"mlops_nb store: {EMPTY_STORE}."
        width = max(len(name) for entries in sections.values() for name in entries)
        lines = ["mlops_nb store"]
        for title, entries in sections.items():
            lines.append(f"  {title} ({len(entries)}):" if entries else f"  {title}: none")
            lines += [f"    {name:<{width}}  {detail}" for name, detail in entries.items()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        if importlib.util.find_spec("ipywidgets") is None:
            return {"text/plain": self.text() + "\n(install ipywidgets to browse it interactively)"}
        bundle = dict(self.widget._repr_mimebundle_() or {})
        # The widget's own text is its repr, with random ids; notebooks compare this text instead.
        bundle["text/plain"] = self.text()
        return bundle

    # -- the widget ----------------------------------------------------------------------------
    @functools.cached_property
    def widget(self) -> ipywidgets.Tab:
        """The browser itself: an ``ipywidgets.Tab``, built on first use."""
        import ipywidgets as w

        tab = w.Tab(children=[self._pipelines_tab(), self._views_tab(), self._transforms_tab()])
        tab.titles = ("Pipelines", "Feature views", "Transforms")
        tab.add_class("mlops-nb-store-browser")  # a handle for styling and browser tests
        return tab

    def _pipelines_tab(self) -> ipywidgets.Widget:
        return _chooser(
            "pipeline",
            list(Pipeline.stored(self.store)),
            self._show_pipeline,
            empty="No pipelines yet: run a %%step cell.",
        )

    def _show_pipeline(self, name: str) -> list[ipywidgets.Widget]:
        pipeline = Pipeline(name, self.store)
        status = pipeline.status()
        return [
            _html(_status_table(status)),
            _chooser(
                "step",
                status["step"].tolist(),
                functools.partial(self._show_step, pipeline, status),
            ),
        ]

    def _show_step(
        self, pipeline: Pipeline, status: pd.DataFrame, name: str
    ) -> list[ipywidgets.Widget]:
        step = pipeline.steps[name]
        row = status.set_index("step").loc[name]
        last_action, seconds = row["last action"] or "none", _seconds(row["seconds"])
        facts = {
            "state": f"{_badge(row['state'])} last action: {html.escape(last_action)}"
            + (f", {seconds} s" if seconds else ""),
            "reads": _names(step.reads),
            "outputs": _names(step.outputs),
            "runs after": _names(pipeline.upstream(name)),
        }
        code = f'<pre style="background:#f3f4f6;padding:6px 8px">{html.escape(step.source)}</pre>'
        return [_html(_facts(facts) + code)]

    def _views_tab(self) -> ipywidgets.Widget:
        versions = self._view_versions()

        def show_view(name: str) -> list[ipywidgets.Widget]:
            show = functools.partial(self._show_view_version, name)
            return [_chooser("version", versions[name], show, initial=versions[name][-1])]

        return _chooser(
            "view",
            list(versions),
            show_view,
            empty="No feature views yet: apply one and ingest data, or run a %%features cell.",
        )

    def _show_view_version(self, name: str, version: int) -> list[ipywidgets.Widget]:
        from ..plots import feature_distributions

        view = self.features.get_view(name, version)
        facts = {
            "entities": _names(view.entities),
            "event time": html.escape(view.timestamp),
            "time to live": html.escape(str(view.ttl) if view.ttl is not None else "none"),
            "features": _names(view.features),
            "description": html.escape(view.description or "none"),
        }
        shown = [_html(_facts(facts))]
        stats = self.features.describe(name, version)
        if not stats["count"].sum():
            return [*shown, _html("<i>No data ingested into this version yet.</i>")]
        figure = feature_distributions(self.features, name, version=version)
        table = stats.reset_index().to_html(index=False, float_format="{:.4g}".format, na_rep="")
        return [*shown, _html(table), _image(figure)]

    def _transforms_tab(self) -> ipywidgets.Widget:
        return _chooser(
            "transform",
            list(self._transform_versions()),
            self._show_transform,
            empty="No transforms yet: TransformRegistry().save(...), or a %%transform cell.",
        )

    def _show_transform(self, name: str) -> list[ipywidgets.Widget]:
        versions = self.transforms.versions(name)
        numbers = versions["version"].tolist()
        sources = dict(zip(numbers, versions["source"]))
        show = functools.partial(self._show_transform_version, name, sources)
        return [
            _html(versions.to_html(index=False)),
            _chooser("version", numbers, show, initial=numbers[-1]),
        ]

    def _show_transform_version(
        self, name: str, sources: dict[int, str], version: int
    ) -> list[ipywidgets.Widget]:
        info = self.transforms.info(name, version)
        facts = {
            "type": html.escape(info["type"]),
            "fitted on": html.escape(sources[version] or "not recorded"),
            "tags": _names(info["tags"]),
            "libraries": html.escape(", ".join(f"{k} {v}" for k, v in info["libraries"].items())),
        }
        if info["schema"]:
            learned = _fit_time_table(info["schema"], info["stats"]).to_html(index=False, na_rep="")
        else:
            learned = "<i>Saved without its training data: no schema or fit-time statistics.</i>"
        shown = [_html(_facts(facts) + learned)]
        if name not in self.serving:
            return shown
        try:
            report = self.transforms.check_skew(name, self.serving[name], version=version)
        except TransformError as error:  # saved without its training data: nothing to compare
            return [*shown, _html(f"<i>{html.escape(str(error))}</i>")]
        figure = self.transforms.plot_skew(name, self.serving[name], version=version)
        table = report.to_html(index=False, float_format="{:.3f}".format, na_rep="")
        return [*shown, _html(f"<b>Skew of the serving data</b>{table}"), _image(figure)]


# -- building blocks ------------------------------------------------------------------------------
def _chooser(
    label: str,
    options: Sequence[Any],
    show: Callable[[Any], list[ipywidgets.Widget]],
    *,
    initial: Any = None,
    empty: str = "Nothing here yet.",
) -> ipywidgets.Widget:
    """A dropdown and, below it, the widgets ``show`` builds for the chosen option."""
    import ipywidgets as w

    if not options:
        return _html(f"<i>{html.escape(empty)}</i>")
    dropdown = w.Dropdown(
        options=list(options), value=options[0] if initial is None else initial, description=label
    )
    body = w.VBox(show(dropdown.value))

    def redraw(change: dict[str, Any]) -> None:
        body.children = show(change["new"])

    dropdown.observe(redraw, names="value")
    return w.VBox([dropdown, body])


def _html(text: str) -> ipywidgets.HTML:
    import ipywidgets as w

    return w.HTML(text)


def _image(figure: Figure) -> ipywidgets.Image:
    """A figure as a PNG image widget, and closed: a notebook would otherwise show it twice."""
    import ipywidgets as w
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    width = round(figure.get_figwidth() * figure.dpi)  # its own size: front ends stretch images
    return w.Image(value=buffer.getvalue(), format="png", width=str(width))


def _facts(facts: dict[str, str]) -> str:
    """Label: value lines, as HTML (values are already escaped)."""
    return "".join(
        f"<div><b>{html.escape(label)}</b>: {value}</div>" for label, value in facts.items()
    )


def _badge(state: str) -> str:
    fill, stroke = STATE_COLOURS.get(state, ("#ffffff", "#111827"))
    return (
        f'<span style="background:{fill};color:{stroke};border:1px solid {stroke};'
        f'border-radius:4px;padding:0 4px">{html.escape(state)}</span>'
    )


def _names(names: Sequence[str]) -> str:
    return html.escape(", ".join(names)) if names else "<i>none</i>"


def _status_table(status: pd.DataFrame) -> str:
    """The status table as HTML, with each state drawn in its colour."""
    shown = status.astype(object).where(status.notna(), "").map(lambda cell: html.escape(str(cell)))
    shown["seconds"] = status["seconds"].map(_seconds)
    shown["state"] = status["state"].map(_badge)
    return str(shown.to_html(index=False, escape=False))


def _fit_time_table(schema: dict[str, str], stats: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per input column: its dtype and what was learned about it at fit time."""
    import pandas as pd

    rows = []
    for column, dtype in schema.items():
        learned = stats.get(column, {})
        quantiles = learned.get("quantiles") or []
        frequencies = learned.get("frequencies", {})
        rows.append(
            {
                "column": column,
                "dtype": dtype,
                "nulls": learned.get("nulls"),
                "mean": learned.get("mean"),
                "std": learned.get("std"),
                "min": quantiles[0] if quantiles else None,
                "median": quantiles[5] if quantiles else None,
                "max": quantiles[-1] if quantiles else None,
                "top categories": ", ".join(
                    f"{k} {v:.0%}" for k, v in list(frequencies.items())[:5]
                ),
            }
        )
    return pd.DataFrame(rows).round(4)


def _seconds(value: Any) -> str:
    import pandas as pd

    return "" if pd.isna(value) else f"{value:.2f}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' * (number != 1)}"


def _versions(numbers: Sequence[int]) -> str:
    return ", ".join(f"v{n}" for n in numbers)
