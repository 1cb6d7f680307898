"""Small deterministic datasets generated offline, one module per lesson's data."""

from __future__ import annotations

from .rides import START, Rides, load_rides

__all__ = ["START", "Rides", "load_rides"]
