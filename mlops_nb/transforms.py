"""The Transform pattern: fitted preprocessing saved safely with its schema, statistics and lineage."""

from __future__ import annotations

import json
import math
import platform
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import MlopsNbError, ValueTooLargeError, did_you_mean, validate_name
from .store import Store

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
    "TransformRegistry",
    "TransformError",
    "UntrustedTypesError",
    "SkewError",
    "LibraryVersionWarning",
    "TRUSTED_MODULES",
]

#: Types from these packages load without being listed in ``trusted=``.
TRUSTED_MODULES = ("sklearn", "numpy", "scipy", "mlops_nb")
#: PSI below 0.1: no real shift; 0.1 to 0.25: some shift, watch it; above 0.25: a real shift.
PSI_WARN, PSI_ALERT = 0.1, 0.25


class TransformError(MlopsNbError, ValueError):
    """A transform that cannot be saved or found (unfitted, unknown name...)."""


class UntrustedTypesError(MlopsNbError, TypeError):
    """A saved transform holds types outside the allow-list; it was not loaded."""


class SkewError(MlopsNbError, ValueError):
    """Serving data drifted from the fit-time data beyond the chosen threshold."""


class LibraryVersionWarning(UserWarning):
    """A transform is loaded with library versions other than the ones it was saved with."""


class TransformRegistry:
    """Fitted transformers, versioned in the local store next to pipelines and features.

    Parameters
    ----------
    path : str, Path or Store, optional
        The store folder (default ``$MLOPS_NB_HOME`` or ``./.mlops_nb``), or an open Store.

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> from sklearn.preprocessing import StandardScaler
    >>> X = pd.DataFrame({"age": [20.0, 30.0, 40.0, 50.0]})
    >>> registry = TransformRegistry(tempfile.mkdtemp())
    >>> registry.save("scaler", StandardScaler().fit(X), X)
    1
    >>> registry.load("scaler").transform(X).ravel().round(2).tolist()
    [-1.34, -0.45, 0.45, 1.34]
    """

    def __init__(self, path: str | Path | Store | None = None) -> None:
        self.store = Store.at(path)

    def __repr__(self) -> str:
        return f"TransformRegistry({str(self.store.root)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (TransformRegistry, (self.store,))

    # -- saving --------------------------------------------------------------------------------
    def save(
        self,
        name: str,
        transformer: Any,
        X: Any = None,
        *,
        source: Any = None,
        tags: Iterable[str] | None = None,
    ) -> int:
        """Save a fitted transformer with skops and return its new version number.

        ``X`` (the data it was fitted on) gives the input schema and fit-time statistics that
        :meth:`check_skew` compares serving data with. ``source`` says where that data came
        from: a training set from ``FeatureStore.get_historical_features`` (its feature view
        versions are recorded), ``"step:NAME"`` for a pipeline step, or any short text.
        """
        import skops.io
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted

        validate_name(name, "transform")
        try:
            check_is_fitted(transformer)
        except NotFittedError:
            raise TransformError(
                f"{type(transformer).__name__} is not fitted, so there is nothing to save as "
                f"{name!r}. Fit it first, e.g. registry.save({name!r}, transformer.fit(X), X)."
            ) from None
        except TypeError as error:
            raise TransformError(
                f"Only scikit-learn estimators can be saved as transforms: {error}"
            ) from None
        try:
            data = skops.io.dumps(transformer)
        except MemoryError:
            raise ValueTooLargeError(
                f"Cannot save transform {name!r} ({type(transformer).__name__}): there is not "
                f"enough memory to write it, so nothing was saved. Free memory (del large values "
                f"you no longer need) and save it again."
            ) from None
        ref = self.store.put(  # a file of its own, so the artifact can be inspected or shipped
            data, label=f"transform {name!r}", serializer="bytes", inline=False
        )
        record = {
            "type": f"{type(transformer).__module__}.{type(transformer).__qualname__}",
            "schema": _schema(X),
            "stats": _statistics(X),
            "libraries": _library_versions(),
            "source": _describe_source(source),
            "tags": sorted(tags or []),
        }
        with self.store.transaction() as db:
            version = db.execute(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM transforms WHERE name = ?", (name,)
            ).fetchone()[0]
            db.execute(
                "INSERT INTO transforms VALUES (?, ?, ?, ?, ?)",
                (name, version, ref.sha256, json.dumps(record, default=str), time.time()),
            )
        return int(version)

    # -- loading -------------------------------------------------------------------------------
    def _record(self, name: str, version: int | None) -> tuple[int, str, dict[str, Any]]:
        rows = self.store.query(
            "SELECT version, sha256, record FROM transforms WHERE name = ? "
            + ("AND version = ? " if version is not None else "")
            + "ORDER BY version DESC LIMIT 1",
            (name, version) if version is not None else (name,),
        )
        if not rows:
            known = [r[0] for r in self.store.query("SELECT DISTINCT name FROM transforms")]
            versions = [r[0] for r in self.store.query("SELECT version FROM transforms WHERE name = ?", (name,))]
            if versions:
                raise TransformError(
                    f"Transform {name!r} has no version {version}; it has {sorted(versions)}."
                )
            raise TransformError(
                f"No transform named {name!r}.{did_you_mean(name, known)} Saved transforms: "
                f"{', '.join(sorted(known)) or 'none yet'}."
            )
        return int(rows[0][0]), rows[0][1], json.loads(rows[0][2])

    def load(self, name: str, version: int | None = None, *, trusted: Iterable[str] = ()) -> Any:
        """Load a saved transformer (the latest version by default), refusing unknown types.

        The file's checksum is verified first. Types from scikit-learn, numpy, scipy and
        mlops_nb load; anything else is refused unless named in ``trusted``. A warning says
        when library versions differ from those at save time.
        """
        import skops.io

        number, sha256, record = self._record(name, version)
        # Checksum verified, and only ever the raw bytes of a skops file: never unpickled.
        data = self.store.get(sha256, label=f"transform {name!r} v{number}", expect="bytes")
        try:  # reads the file's table of contents; runs nothing
            needed = skops.io.get_untrusted_types(data=data)
        except Exception as error:  # noqa: BLE001 -- whatever the damage, the answer is the same
            raise TransformError(
                f"Transform {name!r} v{number} is not a readable skops file "
                f"({type(error).__name__}: {error}), so it was not loaded. Save the transform "
                f"again: registry.save({name!r}, ...)."
            ) from None
        extra = set(trusted)
        refused = sorted(t for t in needed if t.split(".")[0] not in TRUSTED_MODULES and t not in extra)
        if refused:
            raise UntrustedTypesError(
                f"Transform {name!r} v{number} contains types outside scikit-learn, numpy, scipy "
                f"and mlops_nb: {refused}. Loading runs their code, so it was refused. If you trust "
                f"where this file came from, load it with trusted={refused!r}."
            )
        try:
            transformer = skops.io.loads(data, trusted=list(needed))
        except Exception as error:  # noqa: BLE001 -- a damaged file, or one from other versions
            raise TransformError(
                f"Transform {name!r} v{number} could not be loaded from its skops file "
                f"({type(error).__name__}: {error}). Fit it again and save it: "
                f"registry.save({name!r}, ...)."
            ) from None
        changed = {
            library: (saved, now)
            for library, saved in record["libraries"].items()
            if (now := _library_versions().get(library)) is not None and now != saved
        }
        if changed:
            described = ", ".join(f"{lib} {old} -> {new}" for lib, (old, new) in changed.items())
            warnings.warn(
                f"Transform {name!r} v{number} was saved with other library versions ({described}); "
                f"check its output, or re-fit and save it with the current versions.",
                LibraryVersionWarning,
                stacklevel=2,
            )
        return transformer

    def info(self, name: str, version: int | None = None) -> dict[str, Any]:
        """Everything recorded with a version: type, schema, statistics, libraries, source, tags."""
        number, sha256, record = self._record(name, version)
        return {"name": name, "version": number, "sha256": sha256, **record}

    def versions(self, name: str) -> pd.DataFrame:
        """One row per saved version of a transform."""
        import pandas as pd

        self._record(name, None)
        rows = []
        for version, sha256, text, created in self.store.query(
            "SELECT version, sha256, record, created FROM transforms WHERE name = ? ORDER BY version",
            (name,),
        ):
            record = json.loads(text)
            rows.append(
                {
                    "version": version,
                    "saved": pd.Timestamp(created, unit="s", tz="UTC").floor("s"),
                    "type": record["type"].rsplit(".", 1)[-1],
                    "columns": len(record["schema"]),
                    "source": _source_text(record["source"]),
                    "tags": ", ".join(record["tags"]),
                    "sklearn": record["libraries"].get("sklearn"),
                    "sha256": sha256[:12],
                }
            )
        return pd.DataFrame(rows)

    def list(self) -> pd.DataFrame:
        """One row per transform: its latest version, type and when it was saved."""
        import pandas as pd

        rows = []
        for (name,) in self.store.query("SELECT DISTINCT name FROM transforms ORDER BY name"):
            number, _, record = self._record(name, None)
            rows.append({"name": name, "latest": number, "type": record["type"].rsplit(".", 1)[-1],
                         "source": _source_text(record["source"])})  # fmt: skip
        return pd.DataFrame(rows, columns=["name", "latest", "type", "source"])

    # -- skew ------------------------------------------------------------------------------------
    def check_skew(
        self,
        name: str,
        X_serving: Any,
        *,
        version: int | None = None,
        raise_on: float | None = None,
    ) -> pd.DataFrame:
        """Compare serving data with the data the transform was fitted on.

        Returns one row per column: its status (``ok``, ``missing``, ``extra``, ``dtype
        changed``), PSI for numeric columns (``< 0.1`` stable, ``0.1-0.25`` some shift, above a
        real shift), and new categories for the others. With ``raise_on``, a PSI at or above it,
        or a missing column or changed dtype, raises :class:`SkewError`.
        """
        import pandas as pd

        number, _, record = self._record(name, version)
        schema, stats = record["schema"], record["stats"]
        if not schema:
            raise TransformError(
                f"Transform {name!r} v{number} was saved without its training data, so there is "
                f"nothing to compare with. Save it again with X: registry.save({name!r}, fitted, X)."
            )
        serving = _as_frame(X_serving)
        rows = []
        for column, dtype in schema.items():
            row: dict[str, Any] = {"column": column, "fit dtype": dtype, "serving dtype": None,
                                   "status": "ok", "psi": math.nan, "new categories": ""}  # fmt: skip
            if column not in serving.columns:
                row["status"] = "missing"
                rows.append(row)
                continue
            values = serving[column]
            row["serving dtype"] = str(values.dtype)
            if not _same_kind(dtype, str(values.dtype)):
                row["status"] = "dtype changed"
            column_stats = stats.get(column, {})
            if "quantiles" in column_stats and values.dtype.kind in "biuf":
                row["psi"] = _psi(column_stats, values.to_numpy(dtype=float))
            elif "frequencies" in column_stats:
                seen = set(column_stats["frequencies"])
                new = sorted({str(v) for v in values.dropna().unique()} - seen)
                row["new categories"] = ", ".join(new[:10]) + (" ..." if len(new) > 10 else "")
            rows.append(row)
        for column in serving.columns:
            if column not in schema:
                rows.append({"column": column, "fit dtype": None, "serving dtype": str(serving[column].dtype),
                             "status": "extra", "psi": math.nan, "new categories": ""})  # fmt: skip
        report = pd.DataFrame(rows)
        report["drift"] = [
            "" if math.isnan(p) else "real shift" if p > PSI_ALERT else "some shift" if p > PSI_WARN else "stable"
            for p in report["psi"]
        ]
        if raise_on is not None:
            serious = report[(report["psi"] >= raise_on) | report["status"].isin(["missing", "dtype changed"])]
            if len(serious):
                described = "; ".join(
                    f"{r.column}: {r.status if r.status != 'ok' else f'PSI {r.psi:.2f}'}"
                    for r in serious.itertuples()
                )
                raise SkewError(
                    f"Serving data for transform {name!r} v{number} has drifted (raise_on={raise_on}): "
                    f"{described}. Investigate the source, or re-fit the transform on recent data."
                )
        return report

    def plot_skew(self, name: str, X_serving: Any, *, version: int | None = None, ax: Any = None) -> Figure:
        """A bar chart of PSI per numeric column, with the 0.1 and 0.25 guide lines."""
        import matplotlib.pyplot as plt

        report = self.check_skew(name, X_serving, version=version)
        numeric = report.dropna(subset=["psi"])
        if ax is None:
            figure, ax = plt.subplots(figsize=(6, 0.4 * max(len(numeric), 3) + 1))
        else:
            figure = ax.figure
        colours = ["#b91c1c" if p > PSI_ALERT else "#d97706" if p > PSI_WARN else "#047857" for p in numeric["psi"]]
        ax.barh(numeric["column"], numeric["psi"], color=colours)
        ax.axvline(PSI_WARN, color="#d97706", linestyle="--", linewidth=1, label="some shift (0.1)")
        ax.axvline(PSI_ALERT, color="#b91c1c", linestyle="--", linewidth=1, label="real shift (0.25)")
        ax.invert_yaxis()
        ax.set_xlabel("population stability index (PSI)")
        ax.set_title(f"Serving vs fit-time data for {name!r}")
        ax.legend(loc="lower right", fontsize="small")
        figure.tight_layout()
        return figure  # type: ignore[no-any-return]


# -- helpers --------------------------------------------------------------------------------------
def _as_frame(X: Any) -> pd.DataFrame:
    import pandas as pd

    if isinstance(X, pd.DataFrame):
        return X
    array = __import__("numpy").asarray(X)
    if array.ndim != 2:
        raise TransformError(f"Expected a table (DataFrame or 2-D array), got shape {array.shape}.")
    return pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])


def _schema(X: Any) -> dict[str, str]:
    if X is None:
        return {}
    frame = _as_frame(X)
    return {str(column): str(dtype) for column, dtype in frame.dtypes.items()}


def _statistics(X: Any) -> dict[str, dict[str, Any]]:
    """Per numeric column: deciles, mean, std, nulls; per other column: category frequencies."""
    import numpy as np

    if X is None:
        return {}
    frame = _as_frame(X)
    stats: dict[str, dict[str, Any]] = {}
    for column in frame.columns:
        values = frame[column]
        nulls = int(values.isna().sum())
        sample = values.dropna().head(1).tolist()
        if sample and isinstance(sample[0], (list, tuple, np.ndarray)):
            stats[str(column)] = {"cells": "arrays", "nulls": nulls}  # e.g. images: no categories
        elif values.dtype.kind in "biuf":
            numbers = values.dropna().to_numpy(dtype=float)
            quantiles = np.quantile(numbers, np.linspace(0, 1, 11)) if len(numbers) else np.array([])
            edges = np.unique(quantiles[1:-1])
            stats[str(column)] = {
                "quantiles": quantiles.tolist(),
                # Bins between the distinct inner deciles, and the share of fit-time rows in each:
                # a count column (many repeats) has far from equal shares.
                "edges": edges.tolist(),
                "shares": _shares(edges, numbers).tolist() if len(numbers) else [],
                "mean": float(numbers.mean()) if len(numbers) else None,
                "std": float(numbers.std()) if len(numbers) else None,
                "nulls": nulls,
            }
        else:
            counts = values.astype(str).where(values.notna()).value_counts(normalize=True)
            stats[str(column)] = {"frequencies": {str(k): float(v) for k, v in counts.head(100).items()},
                                  "nulls": nulls}  # fmt: skip
    return stats


def _shares(edges: Any, values: Any) -> Any:
    import numpy as np

    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def _psi(stats: dict[str, Any], serving: Any) -> float:
    """Population stability index of ``serving`` against the fit-time bins and their shares."""
    import numpy as np

    serving = serving[~np.isnan(serving)]
    if not stats.get("shares") or not len(serving):
        return math.nan
    edges = np.asarray(stats["edges"])
    expected = np.clip(np.asarray(stats["shares"]), 1e-4, None)
    actual = np.clip(_shares(edges, serving), 1e-4, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _same_kind(fit: str, serving: str) -> bool:
    import numpy as np

    try:
        a, b = np.dtype(fit).kind, np.dtype(serving).kind
    except TypeError:
        return fit == serving
    numeric = "biuf"
    return a == b or (a in numeric and b in numeric)


def _library_versions() -> dict[str, str]:
    import importlib.metadata

    names = {"sklearn": "scikit-learn", "numpy": "numpy", "scipy": "scipy", "pandas": "pandas", "skops": "skops"}
    versions = {"python": platform.python_version()}
    for key, package in names.items():
        try:
            versions[key] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _describe_source(source: Any) -> dict[str, Any] | None:
    """What the transform was fitted on, in a form that can be stored and read back."""
    if source is None:
        return None
    lineage = getattr(source, "attrs", {}).get("lineage") if hasattr(source, "attrs") else None
    if lineage:
        return {"kind": "training_set", "feature_views": lineage, "rows": int(len(source))}
    if isinstance(source, str) and source.startswith("step:"):
        return {"kind": "pipeline_step", "step": source[5:]}
    if isinstance(source, dict):
        return {"kind": "custom", **source}
    return {"kind": "text", "text": str(source)}


def _source_text(source: dict[str, Any] | None) -> str:
    if not source:
        return ""
    if source["kind"] == "training_set":
        views = ", ".join(f"{v['view']} v{v['version']}" for v in source["feature_views"])
        return f"training set ({source['rows']} rows) from {views}"
    if source["kind"] == "pipeline_step":
        return f"step {source['step']!r}"
    if source["kind"] == "text":
        return str(source["text"])
    return json.dumps({k: v for k, v in source.items() if k != "kind"})
