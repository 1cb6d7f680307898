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
        return all(_parquet_stable(dtype) for dtype in value.dtypes)

    def dump(self, value: Any, file: IO[bytes]) -> None:
        value.to_parquet(file, engine="pyarrow")

    def load(self, file: IO[bytes], trusted: list[str]) -> Any:
        import pandas as pd

        return pd.read_parquet(file, engine="pyarrow")


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
