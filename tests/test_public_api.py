"""Every public name resolves and is documented; the package's docstring examples run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import mlops_nb


@pytest.mark.parametrize("name", mlops_nb.__all__)
def test_public_names_resolve_and_are_documented(name: str) -> None:
    value = getattr(mlops_nb, name)
    assert value.__doc__ and len(value.__doc__.strip()) > 20, f"{name} needs a docstring"


MODULES = [m.name for m in pkgutil.walk_packages(mlops_nb.__path__, "mlops_nb.")]


@pytest.mark.parametrize("module_name", MODULES)
def test_every_module_says_what_it_does_and_its_examples_run(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__doc__ and module.__doc__.strip().endswith("."), module_name
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0


def test_errors_are_also_builtin_exceptions() -> None:
    assert issubclass(mlops_nb.UnknownStepError, KeyError)
    assert issubclass(mlops_nb.InvalidNameError, ValueError)
    assert issubclass(mlops_nb.StepSyntaxError, SyntaxError)
    assert str(mlops_nb.UnknownStepError("no step 'x'")) == "no step 'x'"  # not KeyError's quoting


@pytest.mark.parametrize("name", ["Cascade", "ImageFlattener", "ModalityError", "infer_modalities", "multimodal_preprocessor"])
def test_every_pattern_name_resolves(name: str) -> None:
    import mlops_nb.patterns

    assert getattr(mlops_nb.patterns, name).__doc__
