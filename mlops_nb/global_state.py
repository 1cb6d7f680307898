"""Placeholder until the real module lands."""
from typing import Any
def snapshot() -> dict[str, Any]: return {}
def changes(before: Any, after: Any) -> dict[str, Any]: return {}
def apply(changes: Any) -> None: ...
def settings_hashes(snap: Any) -> dict[str, str]: return {}
def draws_from_global_rng(code: str, namespace: Any) -> list[str]: return []
def rng_hash(name: str) -> str: return ""
