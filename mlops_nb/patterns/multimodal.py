"""The Multimodal Input pattern: one preprocessor for text, categories, numbers and images."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from ..errors import MlopsNbError, did_you_mean

__all__ = [
    "MODALITIES",
    "ImageFlattener",
    "ModalityError",
    "MultimodalPreprocessor",
    "infer_modalities",
    "multimodal_preprocessor",
]

#: The column groups, in the order their features appear in the output.
MODALITIES = ("text", "categorical", "numeric", "image")


class ModalityError(MlopsNbError, ValueError):
    """Columns that cannot be grouped or read as the modality they were given."""


class ImageFlattener(TransformerMixin, BaseEstimator):
    """Turn one column of equal-shaped image arrays into one feature per pixel.

    Each cell is a numpy array (for example 8 x 8 grey levels, or 8 x 8 x 3 colours); every cell
    must have the shape seen in ``fit``. Scaling is left to the next step (``StandardScaler`` in
    :func:`multimodal_preprocessor`), so this class does one thing.

    Examples
    --------
    >>> photos = pd.Series([np.zeros((2, 2)), np.ones((2, 2))], name="photo")
    >>> flattener = ImageFlattener().fit(photos)
    >>> flattener.image_shape_
    (2, 2)
    >>> flattener.transform(photos)
    array([[0., 0., 0., 0.],
           [1., 1., 1., 1.]])
    >>> flattener.get_feature_names_out().tolist()
    ['photo_0', 'photo_1', 'photo_2', 'photo_3']
    """

    def fit(self, X: Any, y: Any = None) -> ImageFlattener:
        """Learn the image shape (and the column name, if ``X`` has one)."""
        self.column_ = "image"
        self.image_shape_: tuple[int, ...] = ()
        if isinstance(X, np.ndarray) and X.ndim > 2 and X.dtype.kind in "biuf":
            self.image_shape_, X = X.shape[1:], X.reshape(len(X), -1)  # a stack of images
        elif _is_image_column(X):
            images, self.column_ = _image_cells(X)
            self.image_shape_ = images[0].shape
        pixels = self._pixels(X, reset=True)  # the same checks as transform: bad data fails here
        if not self.image_shape_:  # the input was already one row of pixels per image
            self.image_shape_ = (pixels.shape[1],)
        self.n_features_out_ = pixels.shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Return one row per image and one column per pixel, as floats."""
        check_is_fitted(self, "image_shape_")
        if isinstance(X, np.ndarray) and X.ndim > 2 and X.dtype.kind in "biuf":
            X = X.reshape(len(X), -1)
        return self._pixels(X, reset=False)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Name pixel ``i`` of column ``photo`` as ``photo_i``."""
        check_is_fitted(self, "image_shape_")
        name = str(input_features[0]) if input_features is not None else self.column_
        return np.asarray([f"{name}_{i}" for i in range(self.n_features_out_)], dtype=object)

    def _pixels(self, X: Any, reset: bool) -> np.ndarray:
        """A float matrix, one row per image, checked by scikit-learn (NaN, sparse, empty...)."""
        if _is_image_column(X):
            images, _ = _image_cells(X)
            for row, image in enumerate(images):
                if image.shape != self.image_shape_:
                    raise ModalityError(
                        f"Image column {self.column_!r}: row {row} has shape {image.shape}, but the "
                        f"images seen in fit have shape {self.image_shape_}. Resize every image to "
                        f"one shape before the model sees it."
                    )
            X = np.asarray(images, dtype=float).reshape(len(images), -1)
        return validate_data(self, X, reset=reset, dtype=float)  # type: ignore[no-any-return]


def _is_image_column(X: Any) -> bool:
    """A Series, a one-column frame or a 1-D object array whose cells are arrays."""
    if isinstance(X, pd.DataFrame):
        if X.shape[1] != 1:
            return False
        X = X.iloc[:, 0]
    if isinstance(X, pd.Series):  # anything but numbers: cells are checked, with clear errors, later
        return len(X) > 0 and not pd.api.types.is_numeric_dtype(X.dtype)
    if isinstance(X, np.ndarray) and X.ndim == 1:
        return X.dtype == object and len(X) > 0
    return False


def _image_cells(X: Any) -> tuple[list[np.ndarray], str]:
    """The cells of an image column (a Series, a one-column frame or a sequence) and its name."""
    name = "image"
    if isinstance(X, pd.DataFrame):
        if X.shape[1] != 1:
            raise ModalityError(
                f"ImageFlattener reads one image column at a time, got {list(X.columns)!r}. "
                f"Give each image column its own transformer."
            )
        X = X.iloc[:, 0]
    if isinstance(X, pd.Series):
        name = str(X.name) if X.name is not None else name
    if isinstance(X, np.ndarray) and X.dtype != object:
        return list(X), name  # already a stack of images: one row per image
    cells = list(X)
    for row, cell in enumerate(cells):
        if not isinstance(cell, np.ndarray) or cell.dtype.kind not in "biuf":
            raise ModalityError(
                f"Image column {name!r}: row {row} holds {type(cell).__name__} {cell!r:.40}, not a "
                f"numeric numpy array. Every cell of an image column must be an array of pixels; "
                f"fill or drop rows without an image first."
            )
    return cells, name


class MultimodalPreprocessor(ColumnTransformer):
    """A ColumnTransformer that checks its column names against the data before fitting.

    It is built by :func:`multimodal_preprocessor`; use that function rather than this class.
    The only difference from scikit-learn's ``ColumnTransformer`` is a clear error, with a
    close match, when a column it was given is not in the data.
    """

    def fit_transform(self, X: Any, y: Any = None, **params: Any) -> Any:
        """Check that every named column is in ``X``, then fit and transform as usual."""
        if not isinstance(X, pd.DataFrame):
            raise ModalityError(
                f"multimodal_preprocessor selects columns by name, so it needs a pandas DataFrame; "
                f"got {type(X).__name__}. Pass the frame itself, e.g. pd.DataFrame(rows)."
            )
        for _, _, columns in self.transformers:
            for column in [columns] if isinstance(columns, str) else columns:
                if column not in X.columns:
                    raise ModalityError(
                        f"Column {column!r} is not in the data.{did_you_mean(column, X.columns)} "
                        f"The data has columns {list(X.columns)!r}."
                    )
        return super().fit_transform(X, y, **params)


def multimodal_preprocessor(
    text: str | Iterable[str] = (),
    categorical: str | Iterable[str] = (),
    numeric: str | Iterable[str] = (),
    image: str | Iterable[str] = (),
    *,
    max_text_features: int | None = 1000,
    ngram_range: tuple[int, int] = (1, 1),
) -> MultimodalPreprocessor:
    """Build one preprocessor that turns every modality of a table into one feature matrix.

    Each text column gets its own TF-IDF vocabulary; categorical columns are one-hot encoded
    (categories unseen in ``fit`` become all zeros); numeric columns are imputed with the
    median and standardised; each image column (cells are equal-shaped numpy arrays) is
    flattened to one feature per pixel and standardised. Columns not named are dropped.

    Parameters
    ----------
    text, categorical, numeric, image : str or list of str
        The columns of each modality. A column may appear in one group only.
        :func:`infer_modalities` proposes these groups from a DataFrame.
    max_text_features : int or None, default=1000
        Vocabulary size of each text column (the most frequent words), or ``None`` for all.
    ngram_range : tuple of int, default=(1, 1)
        Word n-grams of the TF-IDF vectorizers; ``(1, 2)`` adds pairs of words.

    Returns
    -------
    MultimodalPreprocessor
        A scikit-learn ``ColumnTransformer``: put it first in a ``Pipeline``; its parts are
        named ``text_<column>``, ``categorical``, ``numeric`` and ``image_<column>``.

    Raises
    ------
    ModalityError
        If no column is given, a column is in two groups, or (at fit time) a column is not in
        the data.

    Examples
    --------
    >>> df = pd.DataFrame({"review": ["great pan", "broke fast", "great"],
    ...                    "category": ["kitchen", "toys", "kitchen"],
    ...                    "price": [20.0, None, 12.0]})
    >>> pre = multimodal_preprocessor(text="review", categorical="category", numeric="price")
    >>> pre.fit_transform(df).shape
    (3, 7)
    >>> pre.get_feature_names_out().tolist()  # doctest: +NORMALIZE_WHITESPACE
    ['text_review__broke', 'text_review__fast', 'text_review__great', 'text_review__pan',
     'categorical__category_kitchen', 'categorical__category_toys', 'numeric__price']
    """
    groups = {
        modality: [columns] if isinstance(columns, str) else list(columns)
        for modality, columns in zip(MODALITIES, (text, categorical, numeric, image), strict=True)
    }
    _check_groups(groups)
    transformers: list[tuple[str, Any, Any]] = []
    for column in groups["text"]:
        vectorizer = TfidfVectorizer(max_features=max_text_features, ngram_range=ngram_range)
        transformers.append((f"text_{column}", vectorizer, column))  # a str: TF-IDF wants 1-D
    if groups["categorical"]:
        encoder = OneHotEncoder(handle_unknown="ignore")
        transformers.append(("categorical", encoder, groups["categorical"]))
    if groups["numeric"]:
        scaled = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
        transformers.append(("numeric", scaled, groups["numeric"]))
    for column in groups["image"]:
        transformers.append(
            (f"image_{column}", make_pipeline(ImageFlattener(), StandardScaler()), column)
        )
    return MultimodalPreprocessor(transformers)


def _check_groups(groups: Mapping[str, list[str]]) -> None:
    """Raise :class:`ModalityError` unless there is a column and no column is in two groups."""
    if not any(groups.values()):
        raise ModalityError(
            "multimodal_preprocessor got no columns. Name at least one, e.g. "
            "multimodal_preprocessor(text=['review'], numeric=['price']), or pass the groups that "
            "infer_modalities(df) proposes: multimodal_preprocessor(**infer_modalities(df))."
        )
    seen: dict[str, str] = {}
    for modality, columns in groups.items():
        for column in columns:
            if not isinstance(column, str):
                raise ModalityError(
                    f"Columns are named by strings; {modality}= got {column!r}. Name the column, "
                    f"e.g. {modality}=['price']."
                )
            if column in seen:
                where = "twice in" if seen[column] == modality else f"in both {seen[column]} and"
                raise ModalityError(
                    f"Column {column!r} is {where} {modality}. Put each column in one group only, "
                    f"the one that says how its values should be read."
                )
            seen[column] = modality


def infer_modalities(
    df: pd.DataFrame, *, max_categories: int = 50, min_words: float = 3.0
) -> dict[str, list[str]]:
    """Propose which columns of ``df`` are text, categorical, numeric or image.

    The rules are simple on purpose; read the proposal and correct it before you train:

    * cells that are numpy arrays: ``image``;
    * booleans and pandas ``category`` columns: ``categorical``;
    * other numbers: ``numeric`` (an id stored as a number lands here too: drop it);
    * strings: ``text`` if values average at least ``min_words`` words or there are more than
      ``max_categories`` distinct values, else ``categorical``.

    Other columns (dates, for instance) are left out. Drop the label before calling it.

    Parameters
    ----------
    df : DataFrame
        The model's input columns.
    max_categories : int, default=50
        Short strings with more distinct values than this are read as text.
    min_words : float, default=3.0
        Strings with at least this many words on average are read as text.

    Returns
    -------
    dict
        ``{"text": [...], "categorical": [...], "numeric": [...], "image": [...]}``, columns in
        the frame's order: ready for ``multimodal_preprocessor(**groups)``.

    Examples
    --------
    >>> df = pd.DataFrame({"review": ["arrived broken, sent it back", "works as promised"],
    ...                    "category": ["toys", "books"], "price": [12.5, 30.0],
    ...                    "photo": [np.zeros((2, 2)), np.ones((2, 2))]})
    >>> infer_modalities(df)
    {'text': ['review'], 'categorical': ['category'], 'numeric': ['price'], 'image': ['photo']}
    """
    if not isinstance(df, pd.DataFrame):
        raise ModalityError(
            f"infer_modalities reads column types from a pandas DataFrame; got {type(df).__name__}."
        )
    groups: dict[str, list[str]] = {modality: [] for modality in MODALITIES}
    for column in df.columns:
        modality = _modality(df[column], max_categories, min_words)
        if modality is not None:
            groups[modality].append(column)
    return groups


def _modality(values: pd.Series, max_categories: int, min_words: float) -> str | None:
    """The modality of one column, or ``None`` when no group fits."""
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    present = values.dropna()
    if len(present) and all(isinstance(cell, np.ndarray) for cell in present):
        return "image"
    if len(present) and all(isinstance(cell, str) for cell in present):
        words = present.str.split().str.len().mean()
        if words >= min_words or present.nunique() > max_categories:
            return "text"
        return "categorical"
    return None
