"""Product reviews with text, a category, numbers and a photo: lesson 04's data, made offline."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["CATEGORIES", "PHOTO_SHAPE", "load_reviews"]

#: Product categories and how much each one nudges a customer towards recommending.
CATEGORIES = {"books": 0.9, "kitchen": 0.4, "garden": 0.0, "toys": -0.4, "electronics": -0.9}
#: Shape of each ``photo`` cell: a tiny grey-level picture of the parcel as it arrived.
PHOTO_SHAPE = (6, 6)

# fmt: off
_POSITIVE = ["great", "love", "excellent", "perfect", "sturdy", "recommend", "happy", "works",
             "solid", "beautiful", "comfortable", "reliable", "easy", "fantastic", "worth"]
_NEGATIVE = ["broke", "poor", "disappointed", "refund", "cheap", "flimsy", "waste", "returned",
             "useless", "awful", "leaks", "cracked", "stopped", "noisy", "wrong"]
_NEUTRAL = ["the", "it", "this", "product", "arrived", "box", "after", "week", "used", "bought",
            "my", "for", "with", "a", "and", "was", "i", "day", "so", "on", "order", "item"]
# fmt: on


def load_reviews(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Generate ``n`` product reviews; the same ``seed`` always gives the same frame.

    Every modality carries part of the answer to "does the customer recommend the product?":

    * ``review`` (text): words drawn from a positive, a negative and a neutral list, mixed
      according to the customer's hidden satisfaction;
    * ``category``: some categories please more than others (see :data:`CATEGORIES`);
    * ``price``: the dearer, the pickier (5 % missing); ``review_length`` (words) and
      ``helpful_votes`` (15 % missing) are there because real tables have such columns;
    * ``photo``: a 6 x 6 grey-level picture of the parcel; a damaged parcel has a dark middle,
      and damaged products are rarely recommended.

    So a model that reads only one modality leaves the others' signal on the table.

    Parameters
    ----------
    n : int
        How many reviews.
    seed : int
        Seed of the random generator.

    Returns
    -------
    DataFrame
        Columns ``review``, ``category``, ``price``, ``review_length``, ``helpful_votes``,
        ``photo`` (numpy arrays of shape :data:`PHOTO_SHAPE`) and the label ``recommended``
        (0 or 1).

    Examples
    --------
    >>> reviews = load_reviews(n=5)
    >>> list(reviews.columns)
    ['review', 'category', 'price', 'review_length', 'helpful_votes', 'photo', 'recommended']
    >>> reviews["photo"].iloc[0].shape
    (6, 6)
    """
    import numpy as np
    import pandas as pd

    if n < 1:
        raise ValueError(f"load_reviews needs at least one review; got n={n!r}.")
    rng = np.random.default_rng(seed)
    satisfaction = rng.normal(0.0, 1.0, n)
    category = rng.choice(list(CATEGORIES), n)
    log_price = rng.normal(3.2, 0.6, n)
    damaged = rng.random(n) < 0.2

    score = (
        1.3 * satisfaction
        + np.array([CATEGORIES[c] for c in category])
        - 0.9 * (log_price - 3.2) / 0.6
        - 2.5 * damaged
        + rng.normal(0.0, 0.4, n)
    )
    recommended = (score > -0.4).astype("int64")

    reviews = _reviews(rng, satisfaction)
    price = np.exp(log_price).round(2)
    price[rng.random(n) < 0.05] = np.nan
    votes = rng.poisson(3.0, n).astype(float)
    votes[rng.random(n) < 0.15] = np.nan
    return pd.DataFrame(
        {
            "review": reviews,
            "category": category,
            "price": price,
            "review_length": [len(text.split()) for text in reviews],
            "helpful_votes": votes,
            "photo": [_photo(rng, is_damaged) for is_damaged in damaged],
            "recommended": recommended,
        }
    )


def _reviews(rng: np.random.Generator, satisfaction: np.ndarray) -> list[str]:
    """Short reviews: each word is neutral, or positive with a chance rising with satisfaction."""
    import numpy as np

    lengths = 5 + rng.poisson(6, len(satisfaction))
    positive_chance = np.repeat(1.0 / (1.0 + np.exp(-2.0 * satisfaction)), lengths)
    size = int(lengths.sum())
    kind = np.where(
        rng.random(size) >= 0.35, 0, np.where(rng.random(size) < positive_chance, 1, 2)
    )  # 0 neutral, 1 positive, 2 negative
    vocabulary = [np.array(words) for words in (_NEUTRAL, _POSITIVE, _NEGATIVE)]
    words = np.empty(size, dtype=object)
    for k, choices in enumerate(vocabulary):
        chosen = kind == k
        words[chosen] = rng.choice(choices, int(chosen.sum()))
    return [" ".join(review) for review in np.split(words, np.cumsum(lengths)[:-1])]


def _photo(rng: np.random.Generator, damaged: bool) -> np.ndarray:
    """A bright, noisy parcel; a damaged one has a darker middle."""

    photo = rng.normal(0.7, 0.15, PHOTO_SHAPE)
    if damaged:
        photo[2:4, 2:4] -= 0.35
    return photo.clip(0.0, 1.0).round(3)
