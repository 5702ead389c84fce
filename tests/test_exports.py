from __future__ import annotations

import importlib
import pkgutil
from typing import TypeVar

import pytest

import towerpy

PUBLIC_MODULES = [
    "towerpy",
    "towerpy.buffer",
    "towerpy.errors",
    "towerpy.limit",
    "towerpy.llm",
    "towerpy.llm.anthropic",
    "towerpy.llm.events",
    "towerpy.llm.openai",
    "towerpy.load_shed",
    "towerpy.lowlevel",
    "towerpy.mcp",
    "towerpy.monitor",
    "towerpy.otel",
    "towerpy.redis",
    "towerpy.resilience",
    "towerpy.retry",
    "towerpy.testing",
    "towerpy.timeout",
    "towerpy.tools",
    "towerpy.tools.bash",
    "towerpy.util",
    "towerpy.workflow",
]


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_all_is_sorted_and_complete(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = module.__all__
    assert exported == sorted(exported), f"{module_name}.__all__ is not sorted"
    assert len(set(exported)) == len(exported)
    for name in exported:
        assert hasattr(module, name), f"{module_name}.__all__ names missing {name}"
    is_package = hasattr(module, "__path__")
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, (type(towerpy), TypeVar))
        and (
            getattr(value, "__module__", "").startswith("towerpy")
            if is_package  # a package re-exports: everything public it shows must be listed
            else getattr(value, "__module__", None) == module_name
        )
    }
    assert public <= set(exported), f"{module_name} defines public names not in __all__"


def test_every_public_submodule_imports() -> None:
    for info in pkgutil.walk_packages(towerpy.__path__, "towerpy."):
        if info.name.endswith("pytest_plugin"):
            continue
        importlib.import_module(info.name)
