"""Small deterministic datasets generated offline, one module per lesson's data."""

from __future__ import annotations

from .reviews import load_reviews
from .rides import START, Rides, load_rides
from .shoppers import AGE_GROUPS_SPLIT, load_shoppers

__all__ = ["AGE_GROUPS_SPLIT", "START", "Rides", "load_reviews", "load_rides", "load_shoppers"]
