"""Reads and formats the metric values of an evaluation dict for the report and its plots.

Metric values may be NaN, or ``None`` in a ``report.json`` read back; both read as NaN
and show as ``n/a``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from faceattr.attributes import ATTRIBUTES


def as_number(value: Any) -> float:
    """A metric as a float; ``None`` (NaN in a JSON round trip) becomes NaN.

    >>> as_number(None), as_number(3)
    (nan, 3.0)
    """
    return math.nan if value is None else float(value)


def format_metric(value: Any, spec: str = ".3f") -> str:
    """A metric for people: three decimals by default, ``n/a`` for NaN or ``None``.

    >>> format_metric(0.84213), format_metric(None), format_metric(0.041, "+.3f")
    ('0.842', 'n/a', '+0.041')
    """
    number = as_number(value)
    return "n/a" if math.isnan(number) else format(number, spec)


def bin_label(bin_: Mapping[str, Any], last: bool) -> str:
    """A true-score bin as an interval: half-open, closed for the ``last`` bin.

    >>> bin_label({"low": 4.0, "high": 5.0}, last=False), bin_label({"low": 4.0, "high": 5.0}, last=True)
    ('[4, 5)', '[4, 5]')
    """
    return f"[{as_number(bin_['low']):g}, {as_number(bin_['high']):g}{']' if last else ')'}"


def decile_label(bin_: Mapping[str, Any]) -> str:
    """A predicted-score decile as the range of the scores in it.

    >>> decile_label({"low": 2.514, "high": 2.8})
    '2.51-2.80'
    """
    return f"{as_number(bin_['low']):.2f}-{as_number(bin_['high']):.2f}"


def ranked_attributes(attributes: Mapping[str, Mapping[str, Any]],
                      unlabelled: bool = True) -> list[tuple[str, float]]:
    """``(name, balanced accuracy)`` weakest first, then (if ``unlabelled``) the NaN ones.

    Args:
        attributes: Attribute name to its metrics, for all 40 attributes.
        unlabelled: Whether to append the attributes without a balanced accuracy.

    >>> metrics = {name: {"balanced_accuracy": 0.9} for name in ATTRIBUTES}
    >>> metrics["Bald"]["balanced_accuracy"], metrics["Blurry"]["balanced_accuracy"] = 0.6, None
    >>> ranked_attributes(metrics)[0], ranked_attributes(metrics)[-1][0], len(ranked_attributes(metrics, False))
    (('Bald', 0.6), 'Blurry', 39)
    """
    pairs = [(name, as_number(attributes[name]["balanced_accuracy"])) for name in ATTRIBUTES]
    ranked = sorted((pair for pair in pairs if not math.isnan(pair[1])), key=lambda pair: pair[1])
    return ranked + ([pair for pair in pairs if math.isnan(pair[1])] if unlabelled else [])
