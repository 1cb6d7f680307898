"""Online shoppers whose reasons to buy change with age: the Cascade lesson's data, generated offline."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["AGE_GROUPS_SPLIT", "load_shoppers"]

#: The age at which shoppers' behaviour changes: under it "young", from it "older".
AGE_GROUPS_SPLIT = 40


def load_shoppers(n: int = 4000, seed: int = 0, ages: tuple[int, int] = (18, 70)) -> pd.DataFrame:
    """Generate one visit per row of an online shop, labelled ``bought``; the same ``seed`` gives the same frame.

    Young shoppers (under :data:`AGE_GROUPS_SPLIT`) chase discounts, browse many pages and buy
    on their phones. Older shoppers distrust big discounts (to them a large discount means low
    quality), come back to shops they know and buy more when they earn more. The same features
    matter in opposite directions in the two groups, so one linear model for everyone fits
    neither group well.

    Parameters
    ----------
    n : int
        How many visits.
    seed : int
        Seed of the random generator.
    ages : tuple of int
        The youngest and oldest age, both included; ages are uniform in between.

    Returns
    -------
    DataFrame
        ``age``, ``discount`` (percent off shown, 0 to 50), ``pages_viewed``, ``mobile`` (1 if on
        a phone), ``returning`` (1 if the shopper bought here before), ``income`` (thousands per
        year) and the label ``bought`` (1 if the visit ended with a purchase).

    Examples
    --------
    >>> shoppers = load_shoppers(n=5)
    >>> list(shoppers.columns)
    ['age', 'discount', 'pages_viewed', 'mobile', 'returning', 'income', 'bought']
    >>> load_shoppers(n=5).equals(shoppers)
    True
    """
    import numpy as np
    import pandas as pd

    youngest, oldest = ages
    if n < 1 or youngest > oldest:
        raise ValueError(
            f"load_shoppers needs n >= 1 and ages=(youngest, oldest) with youngest <= oldest; "
            f"got n={n!r}, ages={ages!r}."
        )
    rng = np.random.default_rng(seed)
    age = rng.integers(youngest, oldest + 1, n)
    discount = rng.choice(np.arange(0, 55, 5), n)
    pages_viewed = rng.poisson(6, n)
    mobile = (rng.random(n) < np.where(age < AGE_GROUPS_SPLIT, 0.7, 0.35)).astype("int64")
    returning = (rng.random(n) < 0.4).astype("int64")
    income = np.round(rng.normal(30 + 0.6 * (age - 18), 12, n).clip(8, None), 1)

    young = age < AGE_GROUPS_SPLIT
    logit_young = 0.12 * (discount - 25) + 0.3 * (pages_viewed - 6) + 1.0 * mobile - 0.3
    logit_older = (
        -0.12 * (discount - 25) + 2.0 * returning + 0.06 * (income - 55) - 0.6 * mobile - 0.6
    )
    logit = np.where(young, logit_young, logit_older)
    bought = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype("int64")
    return pd.DataFrame(
        {
            "age": age,
            "discount": discount,
            "pages_viewed": pages_viewed,
            "mobile": mobile,
            "returning": returning,
            "income": income,
            "bought": bought,
        }
    )
