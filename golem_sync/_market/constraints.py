"""Check a demand's constraint expression against an offer's properties, as yagna's matcher would.

Only for explaining a market scan: which clause of ``(&(golem.inf.mem.gib>=8)(golem.runtime.name=vm))``
an offer fails. Negotiation never uses it (yagna has matched the demand already). The syntax is
yagna's LDAP-like one: ``(&...)``, ``(|...)``, ``(!...)`` and ``(name op value)`` with ``=``, ``<``,
``<=``, ``>``, ``>=``; ``name=*`` tests presence, ``*`` in a value is a wildcard; a list property
matches when one of its items does. A property the offer lacks fails the clause (yagna matches only
what resolves to true). What this module cannot judge (an unknown syntax, a comparison of values
it cannot order) is *undecided* and never reported as unmet: a scan must not invent reasons.
"""
from __future__ import annotations

import fnmatch
import re
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import attrs

__all__ = ["unmet_clauses", "ConstraintSyntaxError"]

_OPS = ("<=", ">=", "=", "<", ">")


class ConstraintSyntaxError(ValueError):
    """The constraint expression could not be parsed."""


@attrs.frozen
class _Item:
    text: str
    name: str
    op: str
    value: str


@attrs.frozen
class _Group:
    text: str
    op: str  # "&", "|" or "!"
    children: Tuple["_Node", ...]


_Node = Union[_Item, _Group]


def unmet_clauses(constraints: str, properties: Mapping[str, Any]) -> List[str]:
    """The top-level clauses of ``constraints`` the properties certainly fail, as written.

    Raises :class:`ConstraintSyntaxError` on an expression that does not parse.
    """
    node = _Parser(constraints).parse()
    clauses: Sequence[_Node] = node.children if isinstance(node, _Group) and node.op == "&" else (node,)
    return [clause.text for clause in clauses if _evaluate(clause, properties) is False]


# -- parsing ---------------------------------------------------------------------------------

class _Parser:
    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0

    def parse(self) -> _Node:
        self._skip()
        if self._pos == len(self._text):
            return _Group("(&)", "&", ())
        node = self._filter()
        self._skip()
        if self._pos != len(self._text):
            raise self._error("text after the expression")
        return node

    def _error(self, what: str) -> ConstraintSyntaxError:
        return ConstraintSyntaxError(f"{what} at position {self._pos} of {self._text!r}")

    def _skip(self) -> None:
        while self._pos < len(self._text) and self._text[self._pos].isspace():
            self._pos += 1

    def _filter(self) -> _Node:
        self._skip()
        start = self._pos
        if not self._text.startswith("(", self._pos):
            raise self._error("expected '('")
        self._pos += 1
        self._skip()
        head = self._text[self._pos:self._pos + 1]
        if head in ("&", "|", "!"):
            self._pos += 1
            children: List[_Node] = []
            while True:
                self._skip()
                if self._text.startswith(")", self._pos):
                    break
                children.append(self._filter())
            self._pos += 1
            if head == "!" and len(children) != 1:
                raise self._error("'!' takes exactly one expression")
            return _Group(self._text[start:self._pos], head, tuple(children))
        return self._item(start)

    def _item(self, start: int) -> _Item:
        end = self._find_close()
        body = self._text[self._pos:end]
        self._pos = end + 1
        match = re.match(r"\s*([^=<>()\s]+)\s*(<=|>=|=|<|>)(.*)$", body, re.S)
        if match is None:
            raise self._error(f"cannot read the clause {body!r}")
        name, op, value = match.group(1), match.group(2), _unescape(match.group(3).strip())
        return _Item(self._text[start:self._pos], name, op, value)

    def _find_close(self) -> int:
        pos = self._pos
        while pos < len(self._text):
            char = self._text[pos]
            if char == "\\":
                pos += 2
                continue
            if char == ")":
                return pos
            if char == "(":
                raise ConstraintSyntaxError(f"unexpected '(' at position {pos} of {self._text!r}")
            pos += 1
        raise ConstraintSyntaxError(f"missing ')' in {self._text!r}")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


# -- evaluation (True, False, or None for undecided) ------------------------------------------

def _evaluate(node: _Node, properties: Mapping[str, Any]) -> Optional[bool]:
    if isinstance(node, _Item):
        return _item(node, properties)
    results = [_evaluate(child, properties) for child in node.children]
    if node.op == "!":
        return None if results[0] is None else not results[0]
    if node.op == "&":
        if False in results:
            return False
        return None if None in results else True
    if True in results:
        return True
    return None if None in results else False


def _item(item: _Item, properties: Mapping[str, Any]) -> Optional[bool]:
    if item.name not in properties:
        return False
    value = properties[item.name]
    if item.op == "=" and item.value == "*":
        return True
    items = value if isinstance(value, list) else [value]
    results = [_compare(v, item.op, item.value) for v in items]
    if True in results:
        return True
    return None if None in results else False


def _compare(actual: Any, op: str, expected: str) -> Optional[bool]:
    if isinstance(actual, bool):
        if op != "=":
            return None
        return expected.lower() == str(actual).lower()
    if isinstance(actual, (int, float)):
        number = _number(expected)
        if number is None:
            return None if op != "=" else False
        return _order(float(actual), op, number)
    if isinstance(actual, str):
        if op == "=":
            if "*" in expected:
                return fnmatch.fnmatchcase(actual, expected)
            return actual == expected
        left, right = _number(actual), _number(expected)
        if left is not None and right is not None:
            return _order(left, op, right)
        left_v, right_v = _version(actual), _version(expected)
        if left_v is not None and right_v is not None:
            return _order(left_v, op, right_v)
        return None
    return None


def _order(left: Any, op: str, right: Any) -> bool:
    if op == "=":
        return bool(left == right)
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


def _number(text: str) -> Optional[float]:
    try:
        return float(text)
    except ValueError:
        return None


def _version(text: str) -> Optional[Tuple[int, ...]]:
    match = re.fullmatch(r"v?(\d+(?:\.\d+)*)", text.strip())
    return tuple(int(part) for part in match.group(1).split(".")) if match else None
