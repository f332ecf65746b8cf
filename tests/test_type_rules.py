"""Type-keyed rule tables: a type's own rule wins, a subclass without one takes its nearest base's."""
from __future__ import annotations

from lmhtc.compiler.type_rules import rule_for


class Base: ...
class Mid(Base): ...
class Leaf(Mid): ...
class Other: ...


def test_the_nearest_rule_in_the_method_resolution_order_applies():
    table = {Base: "base", Mid: "mid"}
    assert rule_for(table, Leaf()) == "mid" and rule_for(table, Mid()) == "mid" and rule_for(table, Base()) == "base"
    assert rule_for(table, Other()) is None and rule_for(table, Other(), "none") == "none"
    assert rule_for({object: "any"}, 3) == "any" and rule_for({int: "int"}, True) == "int"
