"""The Feature Store pattern: versioned feature views, point-in-time training sets, online lookup."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import lineage
from .errors import MlopsNbError, UnstorableValueError, did_you_mean, validate_name
from .store import Store

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FeatureView",
    "FeatureStore",
    "IngestReport",
    "UnknownViewError",
    "FeatureValidationError",
]

# Columns the stored parts add to the data: a user's column must not be called that.
_RESERVED = frozenset({"_event_ts", "_created_ts", "_part", "_row"})
# Most ingests are small enough that this many parts per view version never bites; it keeps the
# list of files one query opens reasonable.
MAX_PARTS = 10_000
#: Ingests of at least this many rows show a progress bar (smaller ones take well under a second).
LARGE_INGEST = 200_000


class UnknownViewError(MlopsNbError, KeyError):
    """A feature view or feature name that the store does not know."""


class FeatureValidationError(MlopsNbError, ValueError):
    """Data that does not fit a feature view; nothing was written."""


@dataclass(frozen=True)
class FeatureView:
    """A named group of features about some entities, each row valid from its event timestamp.

    Parameters
    ----------
    name : str
        The view's name, e.g. ``"driver_stats"``.
    entities : list of str
        The key columns, e.g. ``["driver_id"]``.
    timestamp : str
        The column saying when each row's values became true (the event time).
    created : str, optional
        A column saying when each row was computed; breaks ties between equal event times.
    ttl : timedelta or str, optional
        How long a value stays valid, e.g. ``"2h"`` or ``"7d"``; older values read as missing.
    schema : dict, optional
        Feature column -> dtype. Inferred from the first ingest when omitted.
    description : str
        What the features mean, for the people who will reuse them.

    Examples
    --------
    >>> FeatureView("driver_stats", entities=["driver_id"], ttl="2h").ttl
    Timedelta('0 days 02:00:00')
    """

    name: str
    entities: Sequence[str]
    timestamp: str = "event_ts"
    created: str | None = None
    ttl: Any = None
    schema: dict[str, str] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        import pandas as pd

        validate_name(self.name, "feature view")
        raw = self.entities
        entities = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, (list, tuple)) else []
        if not entities or not all(isinstance(e, str) and e for e in entities):
            raise FeatureValidationError(
                f"Feature view {self.name!r} needs entities=[...] naming its key column(s), "
                f"e.g. entities=['driver_id']; got {self.entities!r}."
            )
        object.__setattr__(self, "entities", tuple(entities))
        if self.ttl is not None:
            ttl = _parse_duration(self.ttl)
            if pd.isna(ttl) or ttl <= pd.Timedelta(0):
                raise FeatureValidationError(
                    f"ttl={self.ttl!r} is not a positive duration: use e.g. '2h', '7d' or "
                    f"datetime.timedelta(days=7), or ttl=None for no limit."
                )
            object.__setattr__(self, "ttl", ttl)
        if self.schema is not None:
            object.__setattr__(self, "schema", {str(k): str(v) for k, v in self.schema.items()})

    @property
    def features(self) -> list[str]:
        """The feature columns (known once the schema is given or inferred)."""
        return list(self.schema or {})

    def _definition(self) -> dict[str, Any]:
        record = asdict(self)
        record["entities"] = list(self.entities)
        record["ttl"] = None if self.ttl is None else self.ttl.isoformat()
        return record

    @classmethod
    def _from_definition(cls, record: dict[str, Any]) -> FeatureView:
        return cls(**record)


@dataclass
class IngestReport:
    """What one ingest wrote."""

    view: str
    version: int
    part: int
    rows: int
    entities: int
    first_event: Any
    last_event: Any
    online_updated: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        return (
            f"Ingested {self.rows} rows into {self.view!r} v{self.version} (part {self.part}); "
            f"events from {self.first_event} to {self.last_event}; online values updated for "
            f"{self.online_updated} of {self.entities} entities."
        )


@dataclass
class _Versioned:
    view: FeatureView
    version: int
    parts: list[tuple[int, str]] = field(default_factory=list)  # (part, sha256)

    @functools.cached_property
    def ttl_us(self) -> int | None:
        return None if self.view.ttl is None else _micros(self.view.ttl)


@dataclass
class _Part:
    """One ingest, ready to be listed: its rows are already stored as a Parquet file."""

    view: FeatureView  # with the schema inferred from this data, when the view had none
    inferred: bool
    number: int
    frame: pd.DataFrame
    losers: list[tuple[int, int]]
    sha256: str
    latest: list[tuple[str, str, int, str]]  # per entity: key, sort key, event µs, features


class FeatureStore:
    """Feature views kept in the local store: Parquet parts offline, SQLite rows online.

    Parameters
    ----------
    path : str, Path or Store, optional
        The store folder (default ``$MLOPS_NB_HOME`` or ``./.mlops_nb``), or an open Store.

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> fs = FeatureStore(tempfile.mkdtemp())
    >>> fs.apply(FeatureView("speed", entities=["car"], timestamp="ts"))
    1
    >>> rows = pd.DataFrame({"car": [1, 1], "ts": ["2024-01-01", "2024-01-03"], "kmh": [50.0, 70.0]})
    >>> print(fs.ingest("speed", rows))  # doctest: +ELLIPSIS
    Ingested 2 rows into 'speed' v1 (part 1); ...
    >>> wanted = pd.DataFrame({"car": [1, 1], "event_timestamp": ["2024-01-02", "2024-01-04"]})
    >>> fs.get_historical_features(wanted, ["speed:kmh"])["kmh"].tolist()
    [50.0, 70.0]
    """

    def __init__(self, path: str | Path | Store | None = None) -> None:
        self.store = Store.at(path)
        self._verified: set[str] = set()
        self._views: dict[str, _Versioned] = {}  # latest versions, valid for one catalog generation
        self._views_generation: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.store.root)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FeatureStore, (self.store,))

    def remove(self, view: str) -> None:
        """Forget a view: every version, its parts and its online values (to start a lesson over)."""
        self._current(view)
        with self.store.transaction() as db:
            for table, column in [("feature_views", "name"), ("feature_parts", "view"), ("online_features", "view")]:
                db.execute(f"DELETE FROM {table} WHERE {column} = ?", (view,))  # noqa: S608

    def lineage_is_current(self, entry: dict[str, Any]) -> bool:
        """Whether a lineage entry (from get_historical_features) still matches the view's data."""
        current = self._current(entry["view"], missing_ok=True)
        return current is not None and current.version == entry["version"] and [
            p for p, _ in current.parts
        ] == entry["parts"]

    # -- views ---------------------------------------------------------------------------------
    def apply(self, view: FeatureView) -> int:
        """Register ``view`` and return its version.

        Re-applying an identical view changes nothing. Changing the description or ttl updates
        the current version; changing entities, timestamps or the schema of a view that already
        has data creates a new version (the old ones stay readable).
        """
        with self.store.transaction():  # decided on the latest state: kernels apply one at a time
            current = self._load_view(view.name, None, missing_ok=True)
            if current is None:
                self._save_view(view, 1)
                return 1
            old = current.view
            if view.schema is None and old.schema is not None:
                view = replace(view, schema=old.schema)
            if view == old:
                return int(current.version)
            structural = (view.entities, view.timestamp, view.created, view.schema)
            if structural == (old.entities, old.timestamp, old.created, old.schema) or not current.parts:
                self._save_view(view, current.version)
                return int(current.version)
            self._save_view(view, current.version + 1)
            return int(current.version) + 1

    def _save_view(self, view: FeatureView, version: int) -> None:
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO feature_views VALUES (?, ?, ?, ?)",
                (view.name, version, json.dumps(view._definition()), time.time()),
            )

    def _current(self, name: str, version: int | None = None, missing_ok: bool = False) -> Any:
        if version is None:
            generation = self.store.generation()
            if generation != self._views_generation:
                self._views, self._views_generation = {}, generation
            if name in self._views:
                return self._views[name]
        found = self._load_view(name, version, missing_ok)
        if version is None and found is not None:
            self._views[name] = found
        return found

    def _load_view(self, name: str, version: int | None, missing_ok: bool) -> Any:
        rows = self.store.query(
            "SELECT version, definition FROM feature_views WHERE name = ? "
            + ("AND version = ? " if version is not None else "")
            + "ORDER BY version DESC LIMIT 1",
            (name, version) if version is not None else (name,),
        )
        if not rows:
            if missing_ok:
                return None
            known = [r[0] for r in self.store.query("SELECT DISTINCT name FROM feature_views")]
            what = f"version {version} of feature view" if version is not None else "feature view"
            raise UnknownViewError(
                f"No {what} {name!r}.{did_you_mean(name, known)} Known views: "
                f"{', '.join(sorted(known)) or 'none yet'}. Create it with "
                f"fs.apply(FeatureView({name!r}, entities=[...]))."
            )
        number, definition = rows[0]
        parts = self.store.query(
            "SELECT part, sha256 FROM feature_parts WHERE view = ? AND version = ? ORDER BY part",
            (name, number),
        )
        return _Versioned(FeatureView._from_definition(json.loads(definition)), number, parts)

    def get_view(self, name: str, version: int | None = None) -> FeatureView:
        """The definition of a view (latest version by default)."""
        return self._current(name, version).view  # type: ignore[no-any-return]

    def list_views(self) -> pd.DataFrame:
        """One row per view: latest version, entities, features, rows, parts, description."""
        import pandas as pd

        rows = []
        for (name,) in self.store.query("SELECT DISTINCT name FROM feature_views ORDER BY name"):
            current = self._current(name)
            count = self.store.query(
                "SELECT COALESCE(SUM(rows), 0) FROM feature_parts WHERE view = ? AND version = ?",
                (name, current.version),
            )[0][0]
            rows.append(
                {
                    "view": name,
                    "version": current.version,
                    "entities": ", ".join(current.view.entities),
                    "features": ", ".join(current.view.features),
                    "rows": count,
                    "parts": len(current.parts),
                    "ttl": current.view.ttl,
                    "description": current.view.description,
                }
            )
        columns = ["view", "version", "entities", "features", "rows", "parts", "ttl", "description"]
        return pd.DataFrame(rows, columns=columns)

    # -- ingest --------------------------------------------------------------------------------
    def ingest(self, view_name: str, df: pd.DataFrame) -> IngestReport:
        """Validate ``df`` against the view, then append it offline and update the online store.

        Nothing is written when validation fails: the error names the offending columns.
        """
        import pandas as pd

        started = time.perf_counter()
        self._current(view_name)
        if not isinstance(df, pd.DataFrame):
            raise FeatureValidationError(
                f"ingest() takes a pandas DataFrame, got {type(df).__qualname__}."
            )
        # The part number, the tie losers and a schema inferred from this data depend on the parts
        # committed before. They are worked out without holding the catalog's write lock (a big
        # ingest takes a while; other kernels keep committing) and committed only if no other
        # ingest came in between. Else they are worked out again, holding the lock this time.
        locked = False
        with _ingest_progress(view_name, len(df)) as progress:
            while True:
                with self.store.transaction() if locked else contextlib.nullcontext():
                    progress.reset()
                    state = self._ingest_state(view_name)
                    current = self._load_view(view_name, None, missing_ok=False)
                    part = self._prepare_part(current, df, progress)
                    with self.store.transaction() as db:
                        if self._ingest_state(view_name) != state:  # another kernel ingested meanwhile
                            locked = True  # (the part stored for nothing goes to gc)
                            continue
                        updated = self._commit_part(db, current, part)
                    progress.set_postfix_str("done")
                    progress.update()
                    frame = part.frame
                    return IngestReport(
                        view_name, current.version, part.number, len(frame), len(part.latest),
                        frame["_event_ts"].min(), frame["_event_ts"].max(), updated,
                        time.perf_counter() - started,
                    )  # fmt: skip

    def _prepare_part(self, current: _Versioned, df: pd.DataFrame, progress: Any) -> _Part:
        """Validate the data, find its tie losers and store its Parquet file (not yet listed)."""
        view: FeatureView = current.view
        if len(current.parts) >= MAX_PARTS:
            raise FeatureValidationError(
                f"Feature view {view.name!r} v{current.version} has {MAX_PARTS} parts, the most "
                f"one version holds. Ingest larger batches, or re-apply the view with a changed "
                f"schema to start a new version."
            )
        progress.set_postfix_str("checking the data")
        frame, schema = _validated(view, df)
        if current.parts:
            self._check_types(view, current, frame)
        progress.update()
        inferred = view.schema is None
        if inferred:
            view = replace(view, schema=schema)
        number = current.parts[-1][0] + 1 if current.parts else 1
        frame = frame.reset_index(drop=True)
        frame["_part"] = number
        frame["_row"] = range(len(frame))
        progress.set_postfix_str("finding ties")
        losers = self._tie_losers(view, current, frame)
        progress.update()
        progress.set_postfix_str("writing Parquet")
        try:
            ref = self.store.put(
                frame, label=f"part {number} of view {view.name!r}", inline=False,
                serializer="parquet",
            )  # fmt: skip
        except UnstorableValueError as error:
            raise FeatureValidationError(
                f"Cannot ingest into {view.name!r}: the data cannot be written as Parquet ({error}). "
                f"Give each column one type, e.g. df[col].astype('boolean') or .astype(str)."
            ) from None
        progress.update()
        progress.set_postfix_str("updating the online store")
        return _Part(view, inferred, number, frame, losers, ref.sha256, _latest_per_entity(frame, view))

    def _commit_part(self, db: Any, current: _Versioned, part: _Part) -> int:
        """List the part, its tie losers and its online values; return how many online rows changed."""
        name, version, frame = part.view.name, current.version, part.frame
        if part.inferred:
            self._save_view(part.view, version)
        db.execute(
            "INSERT INTO feature_parts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (name, version, part.number, part.sha256, len(frame), str(frame["_event_ts"].min()),
             str(frame["_event_ts"].max()), time.time()),
        )  # fmt: skip
        db.executemany(
            "INSERT OR IGNORE INTO feature_losers VALUES (?, ?, ?, ?)",
            [(name, version, p, r) for p, r in part.losers],
        )
        before = db.total_changes
        db.executemany(  # an older value never overwrites a newer one
            "INSERT INTO online_features VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (view, version, entity) DO UPDATE SET sort_key = excluded.sort_key, "
            "event_us = excluded.event_us, features = excluded.features "
            "WHERE excluded.sort_key > online_features.sort_key",
            [(name, version, *row) for row in part.latest],
        )
        return int(db.total_changes - before)

    def _ingest_state(self, name: str) -> list[tuple[Any, ...]]:
        """What an ingest builds on: the view's latest version, its definition and its last part."""
        return self.store.query(
            "SELECT version, definition, (SELECT MAX(part) FROM feature_parts p "
            "WHERE p.view = v.name AND p.version = v.version) FROM feature_views v "
            "WHERE name = ? ORDER BY version DESC LIMIT 1",
            (name,),
        )

    def _losers(self, name: str, version: int) -> pd.DataFrame:
        import pandas as pd

        rows = self.store.query(
            "SELECT part, row FROM feature_losers WHERE view = ? AND version = ?", (name, version)
        )
        return pd.DataFrame(rows, columns=["_part", "_row"], dtype="int64")

    def _tie_losers(self, view: FeatureView, current: _Versioned, frame: pd.DataFrame) -> list[tuple[int, int]]:
        """Rows that lose a tie on (entity, event time), in this part or with earlier parts.

        The winner of a tie has the latest created time, then the latest ingestion (a later part,
        or a later row of the same part). Found here, once, so queries can skip the losers.
        """
        import duckdb
        import pandas as pd

        keys = [*view.entities, "_event_ts"]
        columns = [*keys, "_created_ts", "_part", "_row"]
        ordered = frame[columns].sort_values(["_created_ts", "_row"], kind="stable")
        beaten = ordered.duplicated(keys, keep="last")
        losers = [(int(p), int(r)) for p, r in ordered.loc[beaten, ["_part", "_row"]].to_numpy()]
        if not current.parts:
            return losers
        fresh = ordered.loc[~beaten]
        paths = self._parts_paths(view.name, current)
        on = " AND ".join(f"f.{_quote(k)} = n.{_quote(k)}" for k in keys)
        with duckdb.connect() as connection:
            connection.register("fresh", fresh)
            connection.register("beaten_before", self._losers(view.name, current.version))
            earlier = connection.sql(
                f"SELECT {', '.join('f.' + _quote(c) for c in columns)} FROM read_parquet({paths!r}) f "
                f"SEMI JOIN fresh n ON {on} "
                "ANTI JOIN beaten_before b ON f._part = b._part AND f._row = b._row"
            ).df()
        if earlier.empty:
            return losers
        contested = fresh.merge(earlier[keys].drop_duplicates(), on=keys)
        both = pd.concat([earlier, contested], ignore_index=True)
        both = both.sort_values(["_created_ts", "_part", "_row"], kind="stable")
        beaten = both.duplicated(keys, keep="last")
        losers += [(int(p), int(r)) for p, r in both.loc[beaten, ["_part", "_row"]].to_numpy()]
        return losers

    def _check_types(self, view: FeatureView, current: _Versioned, frame: pd.DataFrame) -> None:
        """Keys must keep the type they had (a join cannot match 1 with "1"), and so must columns
        of Python objects (lists, bytes...): every part of a view is read as one table."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        stored = pq.read_schema(self._parts_paths(view.name, current)[-1])
        for key in view.entities:
            before, now = stored.field(key).type, pa.Array.from_pandas(frame[key]).type
            if _arrow_kind(before) != _arrow_kind(now):
                raise FeatureValidationError(
                    f"Cannot ingest into {view.name!r}: entity column {key!r} holds {now} values "
                    f"but earlier ingests stored {before}. Convert it, e.g. "
                    f"df[{key!r}].astype({'str' if _arrow_kind(before) == 'string' else 'int'})."
                )
        for column in view.features:
            if frame[column].dtype != object or stored.get_field_index(column) < 0:
                continue
            try:
                before, now = stored.field(column).type, pa.Array.from_pandas(frame[column]).type
            except pa.ArrowException:
                continue  # not one type at all: writing the part says so
            if _arrow_kind(before) != _arrow_kind(now) and pa.null() not in (before, now):
                raise FeatureValidationError(
                    f"Cannot ingest into {view.name!r}: column {column!r} holds {now} values but "
                    f"earlier ingests stored {before}. Give it values of the same kind, or apply "
                    f"the view with a new schema to start a new version."
                )

    # -- reading -------------------------------------------------------------------------------
    def read(self, view: str, version: int | None = None) -> pd.DataFrame:
        """Every row ingested into a view version, in ingestion order."""
        import pandas as pd

        current = self._current(view, version)
        frames = [
            self.store.get(sha, label=f"part {p} of view {view!r}", expect="parquet")
            for p, sha in current.parts
        ]
        columns = [*current.view.entities, current.view.timestamp]
        created = [current.view.created] if current.view.created else []
        if not frames:
            return pd.DataFrame(columns=[*columns, *created, *current.view.features])
        data = pd.concat(frames, ignore_index=True)
        data = data.rename(columns={"_event_ts": current.view.timestamp, "_created_ts": current.view.created or "_created_ts"})
        keep = [*columns, *([current.view.created] if current.view.created else []), *current.view.features]
        return data[keep]

    def describe(self, view: str, version: int | None = None) -> pd.DataFrame:
        """Per feature: count, nulls, mean, std, min, max, and the view's event time range."""
        import pandas as pd

        data = self.read(view, version)
        definition = self.get_view(view, version)
        rows = []
        for feature in definition.features:
            column = data[feature]
            numeric = column.dtype.kind in "biuf"
            rows.append(
                {
                    "feature": feature,
                    "dtype": str(column.dtype),
                    "count": int(column.notna().sum()),
                    "nulls": int(column.isna().sum()),
                    "mean": float(column.mean()) if numeric and len(column) else math.nan,
                    "std": float(column.std()) if numeric and len(column) > 1 else math.nan,
                    "min": column.min() if len(column) and numeric else None,
                    "max": column.max() if len(column) and numeric else None,
                    "first_event": data[definition.timestamp].min() if len(data) else None,
                    "last_event": data[definition.timestamp].max() if len(data) else None,
                }
            )
        return pd.DataFrame(rows).set_index("feature")

    def parquet_files(self, view: str, version: int | None = None) -> list[str]:
        """The Parquet files of a view version, checked against their checksums, in ingestion order.

        For engines that read Parquet themselves, e.g. ``dask.dataframe.read_parquet(files)`` for
        larger-than-memory work. Rows are as ingested: the event time is in ``_event_ts`` and the
        store's own columns start with ``_``; rows that lost a tie on (entity, event time) are
        still there, so use :meth:`get_historical_features` for point-in-time training sets.
        """
        return self._parts_paths(view, self._current(view, version))

    def _parts_paths(self, name: str, current: _Versioned) -> list[str]:
        """Paths of a version's Parquet parts, each checked against its checksum once per session."""
        paths = []
        for part, sha256 in current.parts:
            path = self.store.object_path(sha256, ".parquet")
            if sha256 not in self._verified:
                label = f"part {part} of view {name!r}"
                self.store.verify(sha256, label=label, fast=True, expect="parquet")
                self._verified.add(sha256)
            paths.append(str(path))
        return paths

    def get_historical_features(
        self,
        entity_df: pd.DataFrame,
        features: Iterable[str],
        full_feature_names: bool = False,
        *,
        timestamp: str | None = None,
    ) -> pd.DataFrame:
        """A training set: ``entity_df`` with, per row, the feature values as of that row's time.

        For an entity row (keys, time t) and a view with TTL L, the candidates are that entity's
        rows with ``t - L <= event time <= t``; the winner has the latest event time, then the
        latest created time, then the latest ingestion. No candidate gives a missing value. The
        result has exactly the rows of ``entity_df``, in the same order.

        ``features`` are ``"view:feature"`` strings. The entity time column is ``timestamp``,
        by default ``event_timestamp`` (as in Feast) or the only datetime column.
        """
        import duckdb
        import numpy as np
        import pandas as pd

        requested = self._parse_features(features)
        time_column = _entity_time_column(entity_df, timestamp)
        result = entity_df.copy()
        keys = pd.DataFrame(index=pd.RangeIndex(len(entity_df)))
        keys["_entity_us"] = _as_utc_micros(entity_df[time_column], time_column)
        keys["_entity_ts"] = keys["_entity_us"].to_numpy().astype("datetime64[us]")
        keys["_row"] = range(len(keys))
        tables: dict[str, pd.DataFrame] = {"entities_raw": keys}  # registered with DuckDB below
        joins, selects, names = [], [], set(entity_df.columns)
        for number, (view_name, (current, wanted)) in enumerate(requested.items()):
            view = current.view
            missing = [c for c in view.entities if c not in entity_df.columns]
            if missing:
                raise FeatureValidationError(
                    f"entity_df lacks {missing} needed to look up view {view_name!r} "
                    f"(entities {list(view.entities)}). Its columns: {list(entity_df.columns)}."
                )
            for entity in view.entities:
                keys[f"_k{number}_{entity}"] = entity_df[entity].to_numpy()
            paths = self._parts_paths(view_name, current)
            alias = f"f{number}"
            if paths:
                losers = self._losers(view_name, current.version)
                skip = ""
                if len(losers):
                    tables[f"losers{number}"] = losers
                    skip = f"ANTI JOIN losers{number} l ON f._part = l._part AND f._row = l._row"
                table = f"(SELECT f.* FROM read_parquet({paths!r}) f {skip})"
            else:
                empty = ", ".join(  # no rows yet: an empty table whose keys match entity_df's types
                    [f"{_quote(f'_k{number}_{e}')} AS {_quote(e)}" for e in view.entities]
                    + ["NULL::TIMESTAMP AS _event_ts"]
                    + [f"NULL AS {_quote(f)}" for f in wanted]
                )
                table = f"(SELECT {empty} FROM entities_raw WHERE false)"
            on = " AND ".join(f"e.{_quote(f'_k{number}_{k}')} = {alias}.{_quote(k)}" for k in view.entities)
            # Tie losers are gone, so the latest event time at or before t is the one winner.
            joins.append(f"ASOF LEFT JOIN {table} {alias} ON {on} AND e._entity_ts >= {alias}._event_ts")
            for feature in wanted:
                value = f"{alias}.{_quote(feature)}"
                if current.ttl_us is not None:
                    oldest = f"e._entity_us - {current.ttl_us}"
                    value = f"CASE WHEN epoch_us({alias}._event_ts) >= {oldest} THEN {value} END"
                out_name = f"{view_name}__{feature}" if full_feature_names else feature
                if out_name in names:
                    raise FeatureValidationError(
                        f"Feature {feature!r} would overwrite the column {out_name!r}; pass "
                        f"full_feature_names=True to name it {view_name}__{feature}."
                    )
                selects.append(f"{value} AS {_quote(out_name)}")
                names.add(out_name)
        sql = f"SELECT e._row, {', '.join(selects)} FROM entities_raw e {' '.join(joins)}"
        with duckdb.connect() as connection:
            for name, table_frame in tables.items():
                connection.register(name, table_frame)
            joined = connection.sql(sql).df()
        rows = joined["_row"].to_numpy()
        for column in joined.columns[1:]:  # back to entity_df's row order, without a SQL sort
            values = joined[column].to_numpy()
            in_order = np.empty_like(values)
            in_order[rows] = values
            result[column] = in_order
        used = [
            {"kind": "feature_view", "view": v, "version": c.version, "parts": [p for p, _ in c.parts],
             "features": w}
            for v, (c, w) in requested.items()
        ]  # fmt: skip
        result.attrs["lineage"] = used
        for entry in used:
            lineage.record(entry)
        return result

    def _parse_features(self, features: Iterable[str]) -> dict[str, tuple[_Versioned, list[str]]]:
        if isinstance(features, str):
            features = [features]
        requested: dict[str, tuple[_Versioned, list[str]]] = {}
        for reference in features:
            view_name, _, feature = str(reference).partition(":")
            if not feature:
                raise FeatureValidationError(
                    f"Name features as 'view:feature', e.g. 'driver_stats:conv_rate'; got {reference!r}."
                )
            if view_name not in requested:
                requested[view_name] = (self._current(view_name), [])
            current, wanted = requested[view_name]
            if feature not in current.view.features:
                raise UnknownViewError(
                    f"View {view_name!r} has no feature {feature!r}.{did_you_mean(feature, current.view.features)} "
                    f"Its features: {', '.join(current.view.features) or 'none yet (ingest data first)'}."
                )
            wanted.append(feature)
        if not requested:
            raise FeatureValidationError("Ask for at least one feature, e.g. ['driver_stats:conv_rate'].")
        return requested

    def get_online_features(
        self, entity_rows: Any, features: Iterable[str], *, now: Any = None
    ) -> pd.DataFrame:
        """The latest value of each feature per entity, for serving.

        ``entity_rows`` is a list of dicts (or a DataFrame) holding the entity key columns.
        Values older than the view's TTL at ``now`` (default: the current time) read as missing.
        """
        import pandas as pd

        requested = self._parse_features(features)
        rows = entity_rows.to_dict("records") if isinstance(entity_rows, pd.DataFrame) else list(entity_rows)
        now_us = _now_micros(now)
        columns: dict[str, Any] = {}
        for view_name, (current, wanted) in requested.items():
            view = current.view
            for entity in view.entities:
                if entity not in columns:
                    try:
                        columns[entity] = [row[entity] for row in rows]
                    except (KeyError, TypeError):
                        raise FeatureValidationError(
                            f"Each entity row needs {list(view.entities)} for view {view_name!r}; "
                            f"missing {[entity]}, e.g. [{{{view.entities[0]!r}: 1001}}]."
                        ) from None
            if len(view.entities) == 1 and all(type(v) is int for v in columns[view.entities[0]]):
                keys = [f"[{v}]" for v in columns[view.entities[0]]]  # same text as _entity_key
            else:
                keys = [_entity_key(tuple(row[e] for e in view.entities)) for row in rows]
            oldest = -(2**63) if current.ttl_us is None else now_us - current.ttl_us
            fetched: list[tuple[str, str]] = []
            unique = sorted(set(keys))  # sorted keys walk the index in order
            for chunk in range(0, len(unique), 900):  # SQLite takes at most ~1000 parameters
                batch = unique[chunk : chunk + 900]
                fetched += self.store.query(
                    "SELECT entity, features FROM online_features WHERE view = ? AND version = ? "
                    f"AND event_us >= ? AND entity IN ({','.join('?' * len(batch))})",  # noqa: S608
                    (view_name, current.version, oldest, *batch),
                )
            found = {entity: number for number, (entity, _) in enumerate(fetched)}
            decoded = json.loads("[" + ",".join(text for _, text in fetched) + "]")  # one parse
            hits = [found.get(key) for key in keys]
            schema = view.schema or {}
            for feature in wanted:
                values = [None if hit is None else decoded[hit].get(feature) for hit in hits]
                columns[feature] = _as_array(values, schema.get(feature, "object"))
        return _frame(columns)


# -- helpers --------------------------------------------------------------------------------------
def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _entity_key(values: tuple[Any, ...]) -> str:
    """The online table's key for one entity: JSON of its key values (ints without json.dumps)."""
    if len(values) == 1 and isinstance(values[0], int) and not isinstance(values[0], bool):
        return f"[{int(values[0])}]"
    if len(values) == 1 and type(values[0]).__module__ == "numpy" and values[0].dtype.kind in "iu":
        return f"[{int(values[0])}]"
    return json.dumps([v.item() if hasattr(v, "item") else v for v in values])


def _ingest_progress(view: str, rows: int) -> Any:
    """A four-phase progress bar for a large ingest; for a small one, a bar that shows nothing."""
    from tqdm.auto import tqdm

    return tqdm(
        total=4, desc=f"ingest {view} ({rows:,} rows)", disable=rows < LARGE_INGEST,
        bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {postfix}", file=sys.stderr,
    )  # fmt: skip


def _parse_duration(value: Any) -> Any:
    """'90s', '15min', '2h', '7d', '1w', a timedelta or a Timedelta -> Timedelta (NaT if not one)."""
    import re

    import pandas as pd

    units = {"s": "seconds", "sec": "seconds", "m": "minutes", "min": "minutes", "h": "hours",
             "d": "days", "day": "days", "days": "days", "w": "weeks"}  # fmt: skip
    try:  # a duration too long for a Timedelta (OutOfBoundsTimedelta is a ValueError) is not one
        if isinstance(value, str):
            match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*", value)
            if match and match.group(2).lower() in units:
                return pd.Timedelta(**{units[match.group(2).lower()]: float(match.group(1))})
        return pd.Timedelta(value)
    except (ValueError, TypeError, OverflowError):
        return pd.NaT


def _as_array(values: list[Any], dtype: str) -> Any:
    """A column for an online result: numbers as numbers (missing as NaN), the rest as objects."""
    import numpy as np

    kind = np.dtype(dtype).kind if dtype in np.sctypeDict else "O"
    if kind == "f" or (kind in "iu" and None in values):
        return np.array([np.nan if v is None else v for v in values], dtype=float)
    if kind in "iub" and None not in values:
        return np.array(values, dtype=dtype)
    return np.fromiter(values, dtype=object, count=len(values))  # a list value stays one cell


def _frame(columns: dict[str, Any]) -> pd.DataFrame:
    """A DataFrame from finished columns, skipping pandas' per-column checks (an online hot path)."""
    import numpy as np
    import pandas as pd

    arrays = [v if isinstance(v, np.ndarray) else _key_array(v) for v in columns.values()]
    build = getattr(pd.DataFrame, "_from_arrays", None)
    if build is None:  # not in every pandas version: the public constructor is slower, not wrong
        return pd.DataFrame(dict(zip(columns, arrays)))
    length = len(arrays[0]) if arrays else 0
    return build(
        arrays, columns=pd.Index(list(columns)), index=pd.RangeIndex(length),
        verify_integrity=False,
    )  # fmt: skip


def _arrow_kind(type_: Any) -> str:
    """An Arrow type, up to what joins and unions of Parquet files ignore (int widths, string sizes)."""
    import pyarrow as pa

    if pa.types.is_integer(type_):
        return "integer"
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return "string"
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):  # Parquet renames the item field
        return f"list<{_arrow_kind(type_.value_type)}>"
    return str(type_)


def _key_array(values: list[Any]) -> Any:
    """Entity keys as given: int64 when they are ints that fit, else objects (never text)."""
    import numpy as np

    if all(type(v) is int for v in values):
        with contextlib.suppress(OverflowError):
            return np.array(values, dtype=np.int64)
    return np.fromiter(values, dtype=object, count=len(values))


def _micros(duration: Any) -> int:
    import pandas as pd

    return int(duration / pd.Timedelta(microseconds=1))


def _now_micros(now: Any) -> int:
    if now is None:
        return time.time_ns() // 1000
    import pandas as pd

    moment = pd.Timestamp(now)
    if moment.tzinfo is None:
        moment = moment.tz_localize("UTC")
    return int(moment.value // 1000)


def _entity_time_column(entity_df: pd.DataFrame, timestamp: str | None) -> str:
    import pandas as pd

    if timestamp is not None:
        if timestamp not in entity_df.columns:
            raise FeatureValidationError(
                f"entity_df has no column {timestamp!r}.{did_you_mean(timestamp, map(str, entity_df.columns))}"
            )
        return timestamp
    if "event_timestamp" in entity_df.columns:
        return "event_timestamp"
    dated = [c for c in entity_df.columns if pd.api.types.is_datetime64_any_dtype(entity_df[c])]
    if len(dated) == 1:
        return str(dated[0])
    raise FeatureValidationError(
        f"Which column of entity_df holds each row's time? Name it 'event_timestamp' or pass "
        f"timestamp='...'. Its columns: {list(entity_df.columns)}."
    )


def _as_utc_micros(column: pd.Series, name: str) -> Any:
    """Microseconds since the epoch, UTC; naive times are taken as UTC."""
    parsed = _parse_times(column, name)
    return parsed.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]").astype("int64").to_numpy()


def _parse_times(column: pd.Series, name: str) -> pd.Series:
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(column):
        parsed = column if getattr(column.dt, "tz", None) is not None else column.dt.tz_localize("UTC")
    else:
        parsed = pd.to_datetime(column, utc=True, errors="coerce", format="mixed")
    bad = column[parsed.isna()]
    if len(bad):
        raise FeatureValidationError(
            f"Column {name!r} has {len(bad)} missing or unparseable timestamp(s), e.g. "
            f"{bad.head(3).tolist()!r} at rows {bad.index[:3].tolist()}. Fix or drop those rows."
        )
    return parsed


def _validated(view: FeatureView, df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """The frame to store (keys, _event_ts, _created_ts, features) and the feature schema."""
    import pandas as pd

    required = [*view.entities, view.timestamp, *([view.created] if view.created else [])]
    if isinstance(df.columns, pd.MultiIndex):
        raise FeatureValidationError(
            f"Cannot ingest into {view.name!r}: the data has column levels {df.columns.names}; "
            f"give it one level of names, e.g. "
            f"df.columns = ['_'.join(map(str, c)) for c in df.columns]."
        )
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise FeatureValidationError(
            f"Cannot ingest into {view.name!r}: missing column(s) {missing}. The view needs "
            f"entities {list(view.entities)} and timestamp {view.timestamp!r}"
            + (f" and created {view.created!r}" if view.created else "")
            + f"; the data has {list(map(str, df.columns))}."
        )
    twice = list(dict.fromkeys(df.columns[df.columns.duplicated()]))
    if twice:
        raise FeatureValidationError(
            f"Cannot ingest into {view.name!r}: the data has several columns named {twice}. "
            f"Give each column its own name, or drop the copies: df.loc[:, ~df.columns.duplicated()]."
        )
    reserved = [c for c in df.columns if c in _RESERVED]
    if reserved:
        raise FeatureValidationError(
            f"Cannot ingest into {view.name!r}: the column name(s) {reserved} are used by the "
            f"feature store itself. Rename them, e.g. df.rename(columns={{{reserved[0]!r}: "
            f"{reserved[0].lstrip('_')!r}}})."
        )
    if not len(df):
        raise FeatureValidationError(
            f"Cannot ingest into {view.name!r}: the data has no rows. Ingest at least one row."
        )
    for key in view.entities:
        nulls = df[key].isna()
        if nulls.any():
            raise FeatureValidationError(
                f"Cannot ingest into {view.name!r}: entity column {key!r} is empty in "
                f"{int(nulls.sum())} row(s), e.g. rows {df.index[nulls][:3].tolist()}. Every row "
                f"needs its key: drop or fill those rows."
            )
        # Keys are joined on and looked up as JSON text: only integers and strings do both exactly.
        kind = pd.api.types.infer_dtype(df[key], skipna=False)
        if kind not in ("integer", "string"):
            raise FeatureValidationError(
                f"Cannot ingest into {view.name!r}: entity column {key!r} holds {kind} values "
                f"({df[key].dtype}), but keys must be integers or strings. Convert it, e.g. "
                f"df[{key!r}].astype(str)."
            )
    features = [c for c in df.columns if c not in required]
    if any(not isinstance(c, str) or not c for c in features):  # a feature is asked for by name
        raise FeatureValidationError(
            f"Feature column names must be non-empty strings; got {features!r}. Rename them, "
            f"e.g. df.columns = [str(c) or 'unnamed' for c in df.columns]."
        )
    if view.schema is not None:
        extra = [c for c in features if c not in view.schema]
        absent = [c for c in view.schema if c not in features]
        drift = [
            f"{c!r} is {df[c].dtype} but the view has {view.schema[c]}"
            for c in features
            if c in view.schema and not _compatible(str(df[c].dtype), view.schema[c])
        ]
        if extra or absent or drift:
            problems = (
                ([f"unknown column(s) {extra}"] if extra else [])
                + ([f"missing feature(s) {absent}"] if absent else [])
                + drift
            )
            raise FeatureValidationError(
                f"Cannot ingest into {view.name!r}: {'; '.join(problems)}. Match the "
                f"view's schema {view.schema}, or apply a FeatureView with the new schema to "
                f"start a new version."
            )
    if not features:
        raise FeatureValidationError(
            f"Cannot ingest into {view.name!r}: the data has no feature columns besides "
            f"{required}."
        )
    event = _parse_times(df[view.timestamp], view.timestamp)
    frame = pd.DataFrame({key: df[key].to_numpy() for key in view.entities})
    frame["_event_ts"] = event.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]").to_numpy()
    if view.created:
        created = _parse_times(df[view.created], view.created)
        frame["_created_ts"] = created.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]").to_numpy()
    else:  # no created column: rows tie-break on ingestion order alone
        frame["_created_ts"] = frame["_event_ts"]
    schema = {}
    for feature in features:
        values = df[feature]
        if view.schema is not None and str(values.dtype) != view.schema[feature]:
            values = values.astype(view.schema[feature])
        frame[feature] = values.to_numpy()
        schema[feature] = str(values.dtype)
    return frame, schema


def _compatible(actual: str, expected: str) -> bool:
    """Same dtype, or integers into a float column (a safe widening)."""
    return actual == expected or (expected.startswith("float") and actual.startswith(("int", "uint")))


def _latest_per_entity(frame: pd.DataFrame, view: FeatureView) -> list[tuple[str, str, int, str]]:
    """Per entity in this ingest: its newest row as (key, sort key, event µs, JSON features)."""
    ordered = frame.sort_values(["_event_ts", "_created_ts"], kind="stable")
    latest = ordered.drop_duplicates(list(view.entities), keep="last")
    event_us = latest["_event_ts"].astype("int64").to_numpy()
    created_us = latest["_created_ts"].astype("int64").to_numpy()
    part = int(frame["_part"].iloc[0])
    features = view.features or [c for c in frame.columns if not c.startswith("_") and c not in view.entities]
    values = _rows_as_json(latest[features])
    keys = latest[list(view.entities)].itertuples(index=False, name=None)
    return [
        (_entity_key(key), f"{int(ev) + 2**62:016x}{int(cr) + 2**62:016x}{part:08x}", int(ev), text)
        for key, ev, cr, text in zip(keys, event_us, created_us, values)
    ]


def _rows_as_json(frame: pd.DataFrame) -> list[str]:
    """One JSON object per row; NaN and None become null, values JSON cannot hold their text.

    pandas writes every row in one call but rounds floats to 10 digits, so float columns are
    written with ``repr``, which reads back as exactly the same number: online equals offline.
    """
    import numpy as np

    floats = [column for column in frame.columns if frame[column].dtype.kind == "f"]
    others = frame.drop(columns=floats)
    if not others.shape[1]:
        rest = ["{}"] * len(frame)
    else:
        try:
            rest = others.to_json(
                orient="records", lines=True, date_format="iso", default_handler=str
            ).splitlines()
        except (ValueError, OverflowError):  # e.g. bytes that are not UTF-8: one row at a time
            rest = [json.dumps(row, default=str) for row in others.to_dict("records")]
    exact = [
        [
            repr(v) if math.isfinite(v) else "null" if v != v else json.dumps(v)
            for v in frame[column].to_numpy(dtype="float64", na_value=np.nan).tolist()
        ]
        for column in floats
    ]
    names = [json.dumps(column) + ":" for column in floats]
    rows = []
    for number, line in enumerate(rest):
        fields = [name + values[number] for name, values in zip(names, exact)]
        if line != "{}":
            fields.append(line[1:-1])
        rows.append("{" + ",".join(fields) + "}")
    return rows
