"""Rule tables keyed by type: an object's rule is its own type's, else its nearest base's.

Invariant: the lookup follows the method resolution order, so a subclass without a rule of its own
takes its base's, and a subclass's own rule wins over its base's (the tables of the frontend, the
initialiser, the quantizer, the range analysis, the fan-out maps and the artifact's JSON encoder).
"""
from __future__ import annotations

from typing import Any, Mapping, TypeVar

R = TypeVar("R")


def rule_for(table: Mapping[type, R], obj: Any, default: R | None = None) -> R | None:
    """``table``'s rule for ``obj``'s type or its nearest base in the method resolution order; ``default``
    when none has one."""
    return next((table[t] for t in type(obj).__mro__ if t in table), default)
