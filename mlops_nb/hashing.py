"""Fast content hashes of values: equal content gives an equal hash, whatever the object's identity."""

from __future__ import annotations

import io
import pickle
from typing import Any

import xxhash

from .errors import UnhashableValueError

__all__ = ["content_hash", "hash_bytes"]


def hash_bytes(data: bytes | memoryview) -> str:
    """xxh3-128 of raw bytes, as hex: a non-cryptographic hash at many GB/s.

    >>> hash_bytes(b"abc") == hash_bytes(b"abc")
    True
    """
    return xxhash.xxh3_128_hexdigest(data)


def content_hash(value: Any) -> str:
    """Return a hex digest of ``value``'s content.

    DataFrames, Series and numeric arrays are hashed straight from their memory buffers, so a
    1 GB frame costs a fraction of a second; other objects are hashed from their pickle.

    >>> content_hash([1, 2, 3]) == content_hash([1, 2, 3])
    True
    >>> content_hash({"a": 1}) == content_hash({"a": 2})
    False
    """
    state = xxhash.xxh3_128()
    try:
        _update(state, value)
    except RecursionError:
        raise UnhashableValueError(
            f"Cannot hash a {type(value).__qualname__} value: it is nested too deeply or contains "
            f"itself (e.g. a list appended to itself). Steps fingerprint their inputs by content: "
            f"flatten it, or keep it inside one step."
        ) from None
    return state.hexdigest()


_SCALARS = (bool, int, float, complex, str, bytes, type(None))


def _update(state: Any, value: Any) -> None:
    if isinstance(value, _SCALARS):
        _update_scalar(state, value)
    elif isinstance(value, (list, tuple)):
        _update_sequence(state, value)
    elif isinstance(value, dict):
        _update_mapping(state, value)
    elif isinstance(value, (set, frozenset)):
        _update_set(state, value)
    elif type(value).__module__.startswith(("numpy", "pandas")):
        _update_numeric(state, value)
    elif type(value).__module__.startswith("sklearn."):
        _update_estimator(state, value)
    else:
        _update_pickle(state, value)


def _update_numeric(state: Any, value: Any) -> None:
    # numpy and pandas are only imported when such a value is actually hashed.
    import numpy as np
    import pandas as pd

    if isinstance(value, np.ndarray):
        _update_array(state, value)
    elif isinstance(value, np.generic):
        _update_scalar(state, value)
    elif isinstance(value, pd.DataFrame):
        _update_frame(state, value)
    elif isinstance(value, pd.Series):
        _update_series(state, value)
    elif isinstance(value, pd.Index):
        _update_index(state, value)
    else:
        _update_pickle(state, value)


def _tag(state: Any, value: Any) -> None:
    state.update(type(value).__qualname__.encode())
    state.update(b"\x00")


def _update_scalar(state: Any, value: Any) -> None:
    _tag(state, value)
    try:
        text = repr(value)
    except ValueError:  # an int with more digits than Python converts to decimal: hex has no limit
        text = hex(value)
    state.update(text.encode("utf-8", "surrogatepass"))
    state.update(b"\x01")


def _update_sequence(state: Any, value: list[Any] | tuple[Any, ...]) -> None:
    _tag(state, value)
    state.update(len(value).to_bytes(8, "little"))
    for item in value:
        _update(state, item)


def _update_mapping(state: Any, value: dict[Any, Any]) -> None:
    _tag(state, value)
    state.update(len(value).to_bytes(8, "little"))
    for key, item in value.items():
        _update(state, key)
        _update(state, item)


def _update_set(state: Any, value: set[Any] | frozenset[Any]) -> None:
    _tag(state, value)
    for digest in sorted(content_hash(item) for item in value):  # sets have no order
        state.update(digest.encode())


def _update_array(state: Any, array: Any) -> None:
    import numpy as np

    _tag(state, array)
    state.update(f"{array.dtype.str}{array.shape}".encode())
    if array.dtype.hasobject:
        _update_sequence(state, array.ravel().tolist())
    elif array.dtype.names:  # structured: hash field by field, never the padding between them
        for name in array.dtype.names:
            _update_array(state, array[name])
    else:
        # A flat byte view works for every fixed-size dtype (datetimes too) and copies nothing
        # when the array is already contiguous.
        state.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)


def _update_series(state: Any, series: Any) -> None:
    _tag(state, series)
    _update(state, series.name)
    _update_index(state, series.index)
    _update_column(state, series)


def _update_frame(state: Any, frame: Any) -> None:
    _tag(state, frame)
    _update_index(state, frame.columns)
    _update_index(state, frame.index)
    for position in range(frame.shape[1]):
        _update_column(state, frame.iloc[:, position])


def _update_index(state: Any, index: Any) -> None:
    import pandas as pd

    _tag(state, index)
    _update(state, list(index.names))
    if isinstance(index, pd.RangeIndex):
        _update(state, (index.start, index.stop, index.step))
    else:
        _update_column(state, index.to_series(index=pd.RangeIndex(len(index))))


def _update_column(state: Any, column: Any) -> None:
    """Hash one column's dtype and values, straight from its memory buffers where possible."""
    import numpy as np
    import pandas as pd

    state.update(str(column.dtype).encode())
    values = column.array
    numpy_values = getattr(values, "_ndarray", None)  # numbers, datetimes, object columns
    if isinstance(column.dtype, pd.CategoricalDtype):
        _update(state, column.dtype.ordered)
        _update_index(state, column.dtype.categories)
        _update_array(state, values.codes)
    elif numpy_values is not None:
        _update_array(state, numpy_values)
    elif hasattr(values, "_mask") and hasattr(values, "_data"):  # nullable Int64, boolean...
        mask = values._mask
        _update_array(state, mask)
        _update_array(state, np.where(mask, values._data.dtype.type(0), values._data))
    elif hasattr(values, "_pa_array"):  # Arrow-backed, e.g. pandas' default str columns
        _update_arrow(state, values._pa_array)
    else:
        hashes = pd.util.hash_pandas_object(column, index=False, categorize=True)
        _update_array(state, hashes.to_numpy())


def _update_arrow(state: Any, chunked: Any) -> None:
    """Hash an Arrow column from its buffers, independently of how it is split into chunks."""
    import numpy as np
    import pyarrow as pa

    state.update(str(chunked.type).encode())
    chunks = chunked.chunks
    for chunk in chunks:  # validity, as one byte per value
        state.update(np.asarray(chunk.is_null()).view(np.uint8).tobytes())
    if pa.types.is_string(chunked.type) or pa.types.is_large_string(chunked.type) or pa.types.is_binary(
        chunked.type
    ) or pa.types.is_large_binary(chunked.type):
        offset_type = np.int64 if "large" in str(chunked.type) else np.int32
        spans = []
        for chunk in chunks:
            buffers = chunk.buffers()
            offsets = np.frombuffer(buffers[1], dtype=offset_type)[chunk.offset : chunk.offset + len(chunk) + 1]
            state.update(np.diff(offsets).astype(np.int64).tobytes())  # value lengths
            spans.append((buffers[2], int(offsets[0]), int(offsets[-1])))
        for data, start, end in spans:
            if data is not None:
                state.update(memoryview(data)[start:end])
    else:
        for chunk in chunks:
            _update_sequence(state, chunk.to_pylist())


def _update_estimator(state: Any, value: Any) -> None:
    """scikit-learn objects by their state (parameters and fitted arrays), not by pickle bytes.

    Pickle bytes can differ for equal models (e.g. padding inside a tree's node array).
    """
    try:
        contents = value.__getstate__()
    except Exception:  # noqa: BLE001 -- anything unusual is hashed by its pickle instead
        contents = None
    if not isinstance(contents, dict):
        _update_pickle(state, value)
        return
    _tag(state, value)
    _update(state, {k: v for k, v in contents.items() if k != "_sklearn_version"})


def _update_pickle(state: Any, value: Any) -> None:
    _tag(state, value)
    try:
        if isinstance(value, io.IOBase):  # pickling would read or lose the stream's position
            raise TypeError("open files and streams are not data")
        import cloudpickle

        data = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:
        raise UnhashableValueError(
            f"Cannot hash a {type(value).__qualname__} value ({error}). Steps fingerprint their "
            f"inputs by content: convert it to data (a list, DataFrame, array...) before passing "
            f"it between steps, or keep it inside one step."
        ) from None
    state.update(data)
