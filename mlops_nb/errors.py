"""The errors mlops_nb raises: each says what is wrong and how to fix it."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

__all__ = [
    "MlopsNbError",
    "InvalidNameError",
    "UnknownStepError",
    "CycleError",
    "StepSyntaxError",
    "MissingInputError",
    "UnhashableValueError",
    "UnstorableValueError",
    "CorruptObjectError",
    "DiskFullError",
    "ValueTooLargeError",
    "StoreVersionError",
    "MutationWarning",
    "did_you_mean",
    "validate_name",
]


class MlopsNbError(Exception):
    """Base class of every error mlops_nb raises on purpose."""

    def __str__(self) -> str:
        # KeyError would otherwise quote the whole message; one readable line is the point.
        return str(self.args[0]) if self.args else ""


class InvalidNameError(MlopsNbError, ValueError):
    """A step, pipeline or other store name that could escape the store or is unusable."""


class UnknownStepError(MlopsNbError, KeyError):
    """A step name that the pipeline does not know."""


class CycleError(MlopsNbError, ValueError):
    """The steps' dependencies go round in a circle."""


class StepSyntaxError(MlopsNbError, SyntaxError):
    """A step's code is not valid Python."""

    def __str__(self) -> str:
        return SyntaxError.__str__(self)


class MissingInputError(MlopsNbError, NameError):
    """A step reads a variable that neither a step nor the namespace provides."""


class UnhashableValueError(MlopsNbError, TypeError):
    """A value whose content cannot be hashed, so a fingerprint cannot be computed."""


class UnstorableValueError(MlopsNbError, TypeError):
    """A step output that no serializer can write to the store."""


class CorruptObjectError(MlopsNbError, OSError):
    """A store file whose bytes no longer match their checksum."""


class DiskFullError(MlopsNbError, OSError):
    """The disk holding the store is full; the write was abandoned and the store is unchanged."""


class ValueTooLargeError(MlopsNbError, MemoryError):
    """A value too large to serialize in the memory available; nothing was stored."""


class StoreVersionError(MlopsNbError, RuntimeError):
    """A store written by a newer mlops_nb, whose format this version does not know."""


class MutationWarning(UserWarning):
    """A step changes an upstream variable in place instead of binding a new name."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or ``""``.

    >>> did_you_mean("clena", ["load", "clean"])
    " Did you mean 'clean'?"
    """
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
MAX_NAME_LENGTH = 64


def validate_name(name: object, kind: str = "step") -> str:
    """Return ``name`` if it is safe as a store key, else raise :class:`InvalidNameError`.

    Safe means: 1 to 64 letters, digits, ``_``, ``-`` or ``.``, not starting with ``.`` or ``-``,
    and no ``..``, so a name can never become a path outside the store.

    >>> validate_name("train_model")
    'train_model'
    """
    if not isinstance(name, str):
        raise InvalidNameError(f"A {kind} name must be a string, got {name!r}.")
    if not name or len(name) > MAX_NAME_LENGTH or not _NAME.fullmatch(name) or ".." in name:
        raise InvalidNameError(
            f"Invalid {kind} name {name!r}: use 1 to {MAX_NAME_LENGTH} letters, digits, '_', '-' "
            f"or '.', starting with a letter, digit or '_' (no '/', '\\\\' or '..'), "
            f"e.g. 'clean_data'."
        )
    return name
