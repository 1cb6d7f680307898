"""One serializer per value type (Adapter pattern): each adapts a library's own format to one interface."""

from __future__ import annotations

import json
import pickle
import sys
from typing import IO, Any, ClassVar

__all__ = ["Serializer", "SERIALIZERS", "serializer_for", "by_name"]


class Serializer:
    """Writes values of one kind to a binary file and reads them back."""

    name: ClassVar[str]
    suffix: ClassVar[str]

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def dump(self, value: Any, file: IO[bytes]) -> None:
        raise NotImplementedError

    def load(self, file: IO[bytes], trusted: list[str]) -> Any:
        raise NotImplementedError

    def untrusted_types(self, data_path: str) -> list[str]:
        """Types the loader must be told to trust (only skops needs this)."""
        return []


class JsonSerializer(Serializer):
    """Plain data (numbers, strings, lists, string-keyed dicts): readable in any text editor."""

    name, suffix = "json", ".json"

    def accepts(self, value: Any) -> bool:
        return _is_plain_json(value, depth=0)

    def dump(self, value: Any, file: IO[bytes]) -> None:
        file.write(json.dumps(value).encode())

    def load(self, file: IO[bytes], trusted: list[str]) -> Any:
        return json.loads(file.read())


def _odd_nans(frame: Any) -> bool:
    """Whether a float column holds a NaN other than the standard one (``0/0`` and ``inf - inf``
    give a negative NaN): Parquet writes every NaN as the standard one, so such a frame would
    come back with another content hash; pickle keeps the bits."""
    import numpy as np

    for position, dtype in enumerate(frame.dtypes):
        if isinstance(dtype, np.dtype) and dtype.kind == "f":
            values = frame.iloc[:, position].to_numpy()
            nans = values[np.isnan(values)]
            standard = np.array(np.nan, dtype=dtype)
            if nans.size and (nans.view(f"u{dtype.itemsize}") != standard.view(f"u{dtype.itemsize}")).any():
                return True
    return False


def _is_plain_json(value: Any, depth: int) -> bool:
    """True when JSON gives back exactly the same types (no tuples, no int dict keys...)."""
    if depth > 20:
        return False
    if value is None or type(value) in (bool, int, float, str):
        return True
    if type(value) is list:
        return all(_is_plain_json(item, depth + 1) for item in value)
    if type(value) is dict:
        return all(type(k) is str and _is_plain_json(v, depth + 1) for k, v in value.items())
    return False


class ParquetSerializer(Serializer):
    """pandas DataFrames as Parquet (pyarrow): columnar, typed, readable by DuckDB and Spark."""

    name, suffix = "parquet", ".parquet"

    def accepts(self, value: Any) -> bool:
        # Parquet gives back some frames slightly changed (non-string labels become strings,
        # datetime64[s] becomes [ms], object columns become str): those go to pickle instead,
        # so a value always comes back with the same content hash.
        pandas = sys.modules.get("pandas")
        if pandas is None or not isinstance(value, pandas.DataFrame) or value.shape[1] == 0:
            return False
        if not (value.columns.is_unique and all(type(label) is str for label in value.columns)):
            return False
        index = value.index
        if not isinstance(index, pandas.RangeIndex) and (
            isinstance(index, pandas.MultiIndex) or not _parquet_stable(index.dtype)
        ):
            return False
        return all(_parquet_stable(dtype) for dtype in value.dtypes) and not _odd_nans(value)

    def dump(self, value: Any, file: IO[bytes]) -> None:
        value.to_parquet(file, engine="pyarrow")

    def load(self, file: IO[bytes], trusted: list[str]) -> Any:
        import pyarrow.parquet as pq

        # Reading the whole file at once holds the Arrow table and the DataFrame made from it at
        # the same time: twice the frame's size, so a frame that fitted in memory while it was
        # computed might not restore. Large frames are read a batch of columns at a time.
        parquet = pq.ParquetFile(file)
        sizes = _column_sizes(parquet)
        if sum(sizes.values()) <= MIN_BATCH_BYTES:  # small: twice is little, one read is faster
            return _read_with_pandas(file)
        return _read_in_batches(file, parquet, _batches(sizes))


# Large frames are read in batches of about an eighth of their size, but at least this much.
MIN_BATCH_BYTES = 16 * 1024 * 1024


def _column_sizes(parquet: Any) -> dict[str, int]:
    """Each column's size in the file before compression, in order (from the footer)."""
    pandas_metadata = parquet.schema_arrow.pandas_metadata or {}
    # A RangeIndex is stored as a dict, other indexes as columns (which are not in any batch).
    index = {name for name in pandas_metadata.get("index_columns", []) if isinstance(name, str)}
    sizes = dict.fromkeys((name for name in parquet.schema_arrow.names if name not in index), 0)
    metadata = parquet.metadata
    for group in range(metadata.num_row_groups):
        for position in range(metadata.num_columns):
            chunk = metadata.row_group(group).column(position)
            if chunk.path_in_schema in sizes:
                sizes[chunk.path_in_schema] += chunk.total_uncompressed_size
    return sizes


def _batches(sizes: dict[str, int]) -> list[list[str]]:
    """The columns, in order, in batches of about an eighth of their total size."""
    budget = max(sum(sizes.values()) // 8, MIN_BATCH_BYTES)
    batches: list[list[str]] = [[]]
    batch_size = 0
    for name, size in sizes.items():
        if batches[-1] and batch_size + size > budget:
            batches.append([])
            batch_size = 0
        batches[-1].append(name)
        batch_size += size
    return batches


def _read_in_batches(file: IO[bytes], parquet: Any, batches: list[list[str]]) -> Any:
    """Read a large frame with about one batch of columns of extra memory.

    Columns of numbers, booleans or dates are copied one row group at a time into arrays made at
    their final size (one 2-D array per dtype, as pandas keeps them); pandas reads the others
    (strings, categories, nullable numbers, time zones) one batch at a time.
    """
    import numpy as np
    import pandas as pd

    # pandas makes the index, the labels and attrs from a read of no column, and each column's
    # dtype from the schema alone: the frame comes back exactly as it was stored.
    skeleton = pd.read_parquet(file, engine="pyarrow", columns=[])
    dtypes = parquet.schema_arrow.empty_table().to_pandas().dtypes
    plain: dict[Any, list[str]] = {}
    for name, dtype in dtypes.items():
        if isinstance(dtype, np.dtype) and dtype.kind in "biufM":
            plain.setdefault(dtype, []).append(name)
    blocks = {dtype: np.empty((len(names), len(skeleton)), dtype) for dtype, names in plain.items()}
    # Where each such column goes: its row of the 2-D array of its dtype.
    rows = {
        name: blocks[dtype][row] for dtype, names in plain.items() for row, name in enumerate(names)
    }
    parts = []
    for batch in batches:
        filled = [name for name in batch if name in rows]
        start = 0
        for group in range(parquet.num_row_groups if filled else 0):
            table = parquet.read_row_group(group, columns=filled)
            for name in filled:
                rows[name][start : start + table.num_rows] = table.column(name).to_numpy()
            start += table.num_rows
        others = [name for name in batch if name not in rows]
        if others:
            part = _read_with_pandas(file, others)
            part.index = skeleton.index  # each batch comes with its own copy of the index
            parts.append(part)
    for dtype, names in plain.items():
        parts.append(pd.DataFrame(blocks[dtype].T, columns=names, index=skeleton.index, copy=False))
    labels = pd.Index(list(dtypes.index), dtype=skeleton.columns.dtype, name=skeleton.columns.name)
    restored = pd.concat(parts, axis=1)[list(labels)]  # pandas 3 copies no data here
    restored.columns, restored.attrs = labels, skeleton.attrs
    return restored


def _read_with_pandas(file: IO[bytes], columns: list[str] | None = None) -> Any:
    """``pd.read_parquet``, with categorical columns that can be written to."""
    import pandas as pd

    frame = pd.read_parquet(file, engine="pyarrow", columns=columns)
    for position, dtype in enumerate(frame.dtypes):
        # pyarrow hands categorical codes over read-only: setting a value would fail with
        # "assignment destination is read-only". The codes are small to copy.
        if isinstance(dtype, pd.CategoricalDtype):
            frame.isetitem(position, frame.iloc[:, position].copy())
    return frame


def _parquet_stable(dtype: Any) -> bool:
    """Dtypes that come back from a Parquet round trip exactly as they went in."""
    import pandas as pd

    kind = getattr(dtype, "kind", "")
    if isinstance(dtype, pd.CategoricalDtype):
        return _parquet_stable(dtype.categories.dtype)
    if isinstance(dtype, pd.StringDtype):
        return True
    if isinstance(dtype, pd.DatetimeTZDtype):
        return dtype.unit in ("ms", "us", "ns")
    if kind == "M":
        import numpy as np

        return np.datetime_data(dtype)[0] in ("ms", "us", "ns")
    return kind in "biuf" and str(dtype) != "float16"


class NumpySerializer(Serializer):
    """numpy arrays of numbers, booleans, strings or dates as .npy (no pickle inside)."""

    name, suffix = "npy", ".npy"

    def accepts(self, value: Any) -> bool:
        numpy = sys.modules.get("numpy")
        return numpy is not None and isinstance(value, numpy.ndarray) and not value.dtype.hasobject

    def dump(self, value: Any, file: IO[bytes]) -> None:
        import numpy as np

        np.save(file, value, allow_pickle=False)

    def load(self, file: IO[bytes], trusted: list[str]) -> Any:
        import numpy as np

        # From a real file, np.load reads straight into the new array: no memory beyond the
        # array itself. A copy-on-write memory map (mmap_mode="c") would restore at once, but
        # the array would go on reading the file after its sha256 was checked: a file changed in
        # place later would change the array (or, if truncated, kill the kernel with SIGBUS). On
        # Linux a mapped file that garbage collection deletes stays readable; on Windows it
        # cannot be deleted at all, so `store gc` would fail while such an array is alive.
        return np.load(file, allow_pickle=False)


class SkopsSerializer(Serializer):
    """scikit-learn estimators with skops: loading never runs arbitrary code."""

    name, suffix = "skops", ".skops"

    def accepts(self, value: Any) -> bool:
        sklearn_base = sys.modules.get("sklearn.base")
        return sklearn_base is not None and isinstance(value, sklearn_base.BaseEstimator)

    def dump(self, value: Any, file: IO[bytes]) -> None:
        import skops.io

        file.write(skops.io.dumps(value))

    def load(self, file: IO[bytes], trusted: list[str]) -> Any:
        import skops.io

        return skops.io.loads(file.read(), trusted=trusted)

    def untrusted_types(self, data_path: str) -> list[str]:
        import skops.io

        # The store wrote this file itself and checks its sha256 before loading, so the types it
        # contained at write time are the ones to accept at read time.
        return list(skops.io.get_untrusted_types(file=data_path))


class BytesSerializer(Serializer):
    """Raw bytes as they are (e.g. a skops file that is loaded with its own safety checks)."""

    name, suffix = "bytes", ".bin"

    def accepts(self, value: Any) -> bool:
        return type(value) is bytes

    def dump(self, value: Any, file: IO[bytes]) -> None:
        file.write(value)

    def load(self, file: IO[bytes], trusted: list[str]) -> Any:
        return file.read()


class PickleSerializer(Serializer):
    """Anything else, with cloudpickle (functions and classes defined in a notebook included)."""

    name, suffix = "pickle", ".pkl"

    def accepts(self, value: Any) -> bool:
        return True

    def dump(self, value: Any, file: IO[bytes]) -> None:
        import cloudpickle

        cloudpickle.dump(value, file, protocol=pickle.HIGHEST_PROTOCOL)

    def load(self, file: IO[bytes], trusted: list[str]) -> Any:
        # Only ever called after the store has checked the file's sha256 against the catalog.
        return pickle.load(file)  # noqa: S301


SERIALIZERS: tuple[Serializer, ...] = (
    JsonSerializer(),
    ParquetSerializer(),
    NumpySerializer(),
    SkopsSerializer(),
    BytesSerializer(),
    PickleSerializer(),
)


def serializer_for(value: Any) -> list[Serializer]:
    """The serializers to try for ``value``, best first; pickle is always the last resort."""
    return [s for s in SERIALIZERS if s.accepts(value)]


def by_name(name: str) -> Serializer:
    """The serializer that wrote an object, from the name recorded in the catalog."""
    for serializer in SERIALIZERS:
        if serializer.name == name:
            return serializer
    raise ValueError(f"Unknown serializer {name!r}: this store was written by a newer mlops_nb.")
