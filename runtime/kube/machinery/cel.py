"""A small CEL evaluator for CRD validation rules (``x-kubernetes-validations``).

Covers the subset lab CRDs use, with CEL's semantics:

- literals (int, double, string with ``'``/``"`` quotes and escapes, bool, null, lists),
  the variables ``self`` and ``oldSelf`` (transition rules), field selection ``a.b``,
  indexing ``a[0]``/``m['k']``;
- ``!  -  * / %  + -  < <= > >= == !=  in  &&  ||  ?:`` with CEL's precedence; ``&&``/``||``
  absorb errors as CEL does (``false && <error>`` is false); comparing values of different
  types is an error ("no such overload") except int/double, equality of different types is
  false; int division truncates, ``%`` keeps the dividend's sign; int64 overflow is an error;
- ``has(a.b)``; ``size(x)``/``x.size()`` (strings count code points); string ``startsWith``,
  ``endsWith``, ``contains``, ``matches`` (RE2 syntax as Python's ``re`` reads it),
  ``lowerAscii``, ``upperAscii``; ``int()``, ``double()``, ``string()``;
- the macros ``all``, ``exists``, ``exists_one``, ``filter``, ``map`` (two-argument forms).

Selecting a field an object does not have is the runtime error ``no such key: x``, as in
kube-apiserver (rules should guard optional fields with ``has()``).

Not covered (``compile`` rejects them, so a CRD using them is refused rather than
half-checked): maps literals, the Kubernetes CEL libraries (quantity, url, ip, lists
helpers), ``optionalOldSelf``, type checking of field names against the schema at CRD
creation (a rule naming a field the schema lacks fails when evaluated, not when the CRD is
created), cost limits.

Why not the ``cel-python`` package (celpy 0.5.0, evaluated for #16): it has no type checker, so
``other.x == 1`` or ``self.x.quantity()`` compile and only fail when evaluated (a CRD with a
misspelt rule would be accepted); ``has(self)`` is accepted; ``self.x && true`` yields ``1``
instead of "no such overload"; ``self.x == 1.0`` and ``1 != 'a'`` are errors where CEL's
heterogeneous equality says true/true; it has no cost estimation; and its errors are Python
reprs carrying the whole activation (``("no such member in mapping: 'z'", <class 'KeyError'>,
None)``) rather than kube-apiserver's messages. Extension functions can be registered
(``functions=``), but it pulls in lark, google-re2, pendulum, jmespath and tzdata.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

Node = tuple[Any, ...]

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
_MACROS = {"all", "exists", "exists_one", "filter", "map"}
_METHODS = {"size", "startsWith", "endsWith", "contains", "matches", "lowerAscii", "upperAscii"}
_FUNCTIONS = {"size", "matches", "int", "double", "string"}
_VARIABLES = {"self", "oldSelf"}

_TOKEN_RE = re.compile(
    r"""\s*(?:
    (?P<num>\d+\.\d*(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|0x[0-9a-fA-F]+|\d+)(?P<unsigned>[uU])?
  | (?P<str>[rR]?(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\|\||&&|==|!=|<=|>=|[-+*/%!<>?:.,()\[\]{}])
)""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0", "a": "\a", "b": "\b"}


class CelError(Exception):
    """A syntax error (from ``compile``) or a runtime error (from ``evaluate``)."""


def _unquote(tok: str) -> str:
    raw = tok[0] in "rR"
    body = tok[2:-1] if raw else tok[1:-1]
    if raw:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            if nxt == "u" and i + 6 <= len(body):
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            raise CelError(f"invalid escape sequence \\{nxt}")
        out.append(c)
        i += 1
    return "".join(out)


def _tokens(src: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    src = src.rstrip()
    while pos < len(src):
        m = _TOKEN_RE.match(src, pos)
        if m is None or m.end() == pos:
            raise CelError(f"Syntax error: token recognition error at: '{src[pos:].lstrip()[:1]}'")
        pos = m.end()
        if m.group("num") is not None:
            text = m.group("num")
            if m.group("unsigned"):
                raise CelError("unsigned integers are not supported here")
            if text.startswith("0x"):
                out.append(("lit", int(text, 16)))
            elif any(c in text for c in ".eE"):
                out.append(("lit", float(text)))
            else:
                out.append(("lit", int(text)))
        elif m.group("str") is not None:
            out.append(("lit", _unquote(m.group("str"))))
        elif m.group("ident") is not None:
            word = m.group("ident")
            if word in ("true", "false"):
                out.append(("lit", word == "true"))
            elif word == "null":
                out.append(("lit", None))
            elif word == "in":
                out.append(("op", "in"))
            else:
                out.append(("ident", word))
        else:
            out.append(("op", m.group("op")))
    out.append(("end", None))
    return out


class _Parser:
    def __init__(self, src: str) -> None:
        self.toks = _tokens(src)
        self.i = 0

    def peek(self) -> tuple[str, Any]:
        return self.toks[self.i]

    def take(self) -> tuple[str, Any]:
        t = self.toks[self.i]
        self.i += 1
        return t

    def accept(self, op: str) -> bool:
        if self.peek() == ("op", op):
            self.i += 1
            return True
        return False

    def expect(self, op: str) -> None:
        if not self.accept(op):
            kind, val = self.peek()
            found = "end of input" if kind == "end" else repr(val)
            raise CelError(f"Syntax error: expected '{op}', found {found}")

    def parse(self) -> Node:
        node = self.expr()
        if self.peek()[0] != "end":
            raise CelError(f"Syntax error: unexpected {self.peek()[1]!r}")
        return node

    def expr(self) -> Node:
        cond = self.binary(0)
        if self.accept("?"):
            a = self.binary(0)
            self.expect(":")
            b = self.expr()
            return ("cond", cond, a, b)
        return cond

    _LEVELS: tuple[tuple[str, ...], ...] = (
        ("||",),
        ("&&",),
        ("==", "!=", "<", "<=", ">", ">=", "in"),
        ("+", "-"),
        ("*", "/", "%"),
    )

    def binary(self, level: int) -> Node:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while True:
            kind, op = self.peek()
            if kind != "op" or op not in self._LEVELS[level]:
                return left
            self.take()
            left = ("bin", op, left, self.binary(level + 1))

    def unary(self) -> Node:
        if self.accept("!"):
            return ("not", self.unary())
        if self.accept("-"):
            return ("neg", self.unary())
        return self.member()

    def args(self) -> list[Node]:
        out: list[Node] = []
        if self.accept(")"):
            return out
        while True:
            out.append(self.expr())
            if self.accept(")"):
                return out
            self.expect(",")

    def member(self) -> Node:
        node = self.primary()
        while True:
            if self.accept("."):
                kind, name = self.take()
                if kind != "ident":
                    raise CelError("Syntax error: expected a field or method name after '.'")
                if self.accept("("):
                    args = self.args()
                    if name in _MACROS:
                        node = self.macro(name, node, args)
                    elif name in _METHODS:
                        node = ("call", name, node, args)
                    else:
                        raise CelError(f"undeclared reference to '{name}'")
                else:
                    node = ("sel", node, name)
            elif self.accept("["):
                idx = self.expr()
                self.expect("]")
                node = ("index", node, idx)
            else:
                return node

    def macro(self, name: str, target: Node, args: list[Node]) -> Node:
        if len(args) != 2 or args[0][0] != "var":
            raise CelError(f"{name}() takes a variable name and an expression")
        return ("macro", name, target, args[0][1], args[1])

    def primary(self) -> Node:
        kind, val = self.take()
        if kind == "lit":
            return ("lit", val)
        if kind == "ident":
            if self.accept("("):
                args = self.args()
                if val == "has":
                    if len(args) != 1 or args[0][0] != "sel":
                        raise CelError("invalid argument to has() macro")
                    return ("has", args[0][1], args[0][2])
                if val not in _FUNCTIONS:
                    raise CelError(f"undeclared reference to '{val}'")
                return ("call", val, None, args)
            return ("var", val)
        if (kind, val) == ("op", "("):
            node = self.expr()
            self.expect(")")
            return node
        if (kind, val) == ("op", "["):
            items: list[Node] = []
            if not self.accept("]"):
                while True:
                    items.append(self.expr())
                    if self.accept("]"):
                        break
                    self.expect(",")
            return ("list", items)
        found = "end of input" if kind == "end" else repr(val)
        raise CelError(f"Syntax error: unexpected {found}")


def _free_vars(node: Node, bound: frozenset[str] = frozenset()) -> set[str]:
    tag = node[0]
    if tag == "var":
        return set() if node[1] in bound else {node[1]}
    if tag == "macro":
        return _free_vars(node[2], bound) | _free_vars(node[4], bound | {node[3]})
    out: set[str] = set()
    for part in node[1:]:
        if isinstance(part, tuple) and part and isinstance(part[0], str):
            out |= _free_vars(part, bound)
        elif isinstance(part, list):
            for p in part:
                out |= _free_vars(p, bound)
    return out


class Program:
    """A compiled rule: ``evaluate(self_value, old_self)``."""

    def __init__(self, source: str, ast: Node) -> None:
        self.source = source
        self.ast = ast
        self.uses_old_self = "oldSelf" in _free_vars(ast)

    def evaluate(self, self_value: Any, old_self: Any = None) -> Any:
        return _eval(self.ast, {"self": self_value, "oldSelf": old_self})


@lru_cache(maxsize=1024)
def compile_rule(source: str) -> Program:
    """Parse a rule; CelError names what is wrong or not supported."""
    ast = _Parser(source).parse()
    unknown = _free_vars(ast) - _VARIABLES
    if unknown:
        raise CelError(f"undeclared reference to '{sorted(unknown)[0]}'")
    return Program(source, ast)


# -- evaluation -----------------------------------------------------------------------------


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "double"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    if isinstance(v, dict):
        return "map"
    return "null_type"


def _no_overload(op: str, *vals: Any) -> CelError:
    return CelError(f"no such overload: {op}({', '.join(_kind(v) for v in vals)})")


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def equal(a: Any, b: Any) -> bool:
    """CEL's ``==``: numbers by value whatever their type, lists and maps element-wise."""
    if _is_num(a) and _is_num(b):
        return bool(a == b)
    if _kind(a) != _kind(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _int(v: int) -> int:
    if not INT_MIN <= v <= INT_MAX:
        raise CelError("integer overflow")
    return v


def _arith(op: str, a: Any, b: Any) -> Any:
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    if op == "+" and isinstance(a, list) and isinstance(b, list):
        return a + b
    ints = _kind(a) == "int" and _kind(b) == "int"
    if not (ints or (_kind(a) == "double" and _kind(b) == "double")):
        raise _no_overload({"+": "_+_", "-": "_-_", "*": "_*_", "/": "_/_", "%": "_%_"}[op], a, b)
    if op == "+":
        return _int(a + b) if ints else a + b
    if op == "-":
        return _int(a - b) if ints else a - b
    if op == "*":
        return _int(a * b) if ints else a * b
    if op == "/":
        if ints:
            if b == 0:
                raise CelError("division by zero")
            q = abs(a) // abs(b)
            return _int(q if (a >= 0) == (b >= 0) else -q)
        return a / b if b else (float("inf") if a > 0 else float("-inf") if a < 0 else float("nan"))
    if not ints:
        raise _no_overload("_%_", a, b)
    if b == 0:
        raise CelError("modulus by zero")
    r = abs(a) % abs(b)
    return r if a >= 0 else -r


def _compare(op: str, a: Any, b: Any) -> bool:
    ok = (_is_num(a) and _is_num(b)) or (_kind(a) == _kind(b) and _kind(a) in ("string", "bool"))
    if not ok:
        raise _no_overload(f"_{op}_", a, b)
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def _bool(v: Any, op: str) -> bool:
    if not isinstance(v, bool):
        raise _no_overload(op, v)
    return v


def _logic(op: str, left: Node, right: Node, env: dict[str, Any]) -> bool:
    """CEL's commutative && / ||: a decisive operand wins over an error on the other side."""
    decisive = op == "||"
    results: list[bool | CelError] = []
    for side in (left, right):
        try:
            v = _bool(_eval(side, env), f"_{op}_")
        except CelError as e:
            results.append(e)
            continue
        if v is decisive:
            return decisive
        results.append(v)
    for r in results:
        if isinstance(r, CelError):
            raise r
    return not decisive


def _call(name: str, target: Any, args: list[Any]) -> Any:
    if name == "size":
        v = target if target is not None else (args[0] if len(args) == 1 else None)
        if len(args) != (0 if target is not None else 1) or not isinstance(v, str | list | dict):
            raise _no_overload("size", v)
        return len(v)
    if name in ("int", "double", "string"):
        if len(args) != 1:
            raise _no_overload(name, *args)
        v = args[0]
        try:
            if name == "int" and not isinstance(v, bool | list | dict) and v is not None:
                return _int(int(v))
            if name == "double" and not isinstance(v, bool | list | dict) and v is not None:
                return float(v)
        except ValueError:
            raise CelError(f"{name}() cannot convert {v!r}") from None
        if name == "string" and isinstance(v, str | int | float) and not isinstance(v, bool):
            return v if isinstance(v, str) else repr(v) if isinstance(v, float) else str(v)
        if name == "string" and isinstance(v, bool):
            return "true" if v else "false"
        raise _no_overload(name, v)
    if name == "matches" and target is None:
        target, args = (args[0], args[1:]) if args else (None, [])
    if not isinstance(target, str):
        raise _no_overload(name, target, *args)
    if name in ("lowerAscii", "upperAscii"):
        if args:
            raise _no_overload(name, target, *args)
        table = str.maketrans(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if name == "lowerAscii" else "abcdefghijklmnopqrstuvwxyz",
            "abcdefghijklmnopqrstuvwxyz" if name == "lowerAscii" else "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        )
        return target.translate(table)
    if len(args) != 1 or not isinstance(args[0], str):
        raise _no_overload(name, target, *args)
    arg = args[0]
    if name == "startsWith":
        return target.startswith(arg)
    if name == "endsWith":
        return target.endswith(arg)
    if name == "contains":
        return arg in target
    try:
        return re.search(arg, target) is not None
    except re.error as e:
        raise CelError(f"invalid regular expression {arg!r}: {e}") from None


def _eval(node: Node, env: dict[str, Any]) -> Any:
    tag = node[0]
    if tag == "lit":
        return node[1]
    if tag == "var":
        return env[node[1]]
    if tag == "list":
        return [_eval(n, env) for n in node[1]]
    if tag == "sel":
        obj = _eval(node[1], env)
        if not isinstance(obj, dict):
            raise CelError(f"type '{_kind(obj)}' does not support field selection")
        if node[2] not in obj:
            raise CelError(f"no such key: {node[2]}")
        return obj[node[2]]
    if tag == "has":
        obj = _eval(node[1], env)
        if not isinstance(obj, dict):
            raise CelError(f"invalid type for field selection: {_kind(obj)}")
        return node[2] in obj
    if tag == "index":
        obj, idx = _eval(node[1], env), _eval(node[2], env)
        if isinstance(obj, list):
            if _kind(idx) != "int":
                raise _no_overload("_[_]", obj, idx)
            if not 0 <= idx < len(obj):
                raise CelError(f"index out of bounds: {idx}")
            return obj[idx]
        if isinstance(obj, dict):
            if not isinstance(idx, str) or idx not in obj:
                raise CelError(f"no such key: {idx}")
            return obj[idx]
        raise _no_overload("_[_]", obj, idx)
    if tag == "not":
        return not _bool(_eval(node[1], env), "!_")
    if tag == "neg":
        v = _eval(node[1], env)
        if not _is_num(v):
            raise _no_overload("-_", v)
        return _int(-v) if isinstance(v, int) else -v
    if tag == "cond":
        return _eval(node[2] if _bool(_eval(node[1], env), "_?_:_") else node[3], env)
    if tag == "bin":
        op = node[1]
        if op in ("&&", "||"):
            return _logic(op, node[2], node[3], env)
        a, b = _eval(node[2], env), _eval(node[3], env)
        if op == "==":
            return equal(a, b)
        if op == "!=":
            return not equal(a, b)
        if op == "in":
            if isinstance(b, list):
                return any(equal(a, x) for x in b)
            if isinstance(b, dict):
                return a in b if isinstance(a, str) else False
            raise _no_overload("@in", a, b)
        if op in ("<", "<=", ">", ">="):
            return _compare(op, a, b)
        return _arith(op, a, b)
    if tag == "call":
        target = _eval(node[2], env) if node[2] is not None else None
        return _call(node[1], target, [_eval(a, env) for a in node[3]])
    if tag == "macro":
        return _macro(node, env)
    raise CelError(f"unknown node {tag}")


def _macro(node: Node, env: dict[str, Any]) -> Any:
    _tag, name, target_node, var, body = node
    target = _eval(target_node, env)
    if isinstance(target, dict):
        items = list(target.keys())
    elif isinstance(target, list):
        items = target
    else:
        raise _no_overload(name, target)

    def run(x: Any) -> Any:
        return _eval(body, {**env, var: x})

    if name == "map":
        return [run(x) for x in items]

    def test(x: Any) -> bool:
        return _bool(run(x), name)

    if name == "filter":
        return [x for x in items if test(x)]
    if name == "exists_one":
        return sum(1 for x in items if test(x)) == 1
    # all / exists absorb errors like && / || do
    decisive = name == "exists"
    err: CelError | None = None
    for x in items:
        try:
            if test(x) is decisive:
                return decisive
        except CelError as e:
            err = err or e
    if err is not None:
        raise err
    return not decisive
