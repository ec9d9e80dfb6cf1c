"""The CEL subset of CRD validation rules (runtime/kube/machinery/cel.py) and how crd.py applies it."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.kube.machinery import cel
from runtime.kube.registry import ResourceDef, crd


def ev(rule: str, self_value: Any = None, old: Any = None) -> Any:
    return cel.compile_rule(rule).evaluate(self_value, old)


@pytest.mark.parametrize(
    ("rule", "value"),
    [
        ("self.x <= self.y", True),
        ("self.minReplicas <= self.replicas", False),
        ("has(self.x) && !has(self.z)", True),
        ("size(self.name) < 10 && self.name.size() == 5", True),
        ("self.name.startsWith('al') && self.name.endsWith('ce') && self.name.contains('ic')", True),
        ("self.name.matches('^a[a-z]+$')", True),
        ("self.tags.all(t, t.size() > 1) && self.tags.exists(t, t == 'db')", True),
        ("self.tags.exists_one(t, t.startsWith('d'))", True),
        ("self.tags.filter(t, t != 'db') == ['web']", True),
        ("self.tags.map(t, t.upperAscii()) == ['DB', 'WEB']", True),
        ("'db' in self.tags && 'x' in self && !('q' in self)", True),
        ("self.x + self.y * 2 == 5 && -7 / 2 == -3 && -7 % 3 == -1", True),
        ("self.x == 1.0 && self.x < 1.5", True),
        ("self.x > 1 ? 'big' : 'small'", "small"),
        ('self.name + "\\t" + string(self.x)', "alice\t1"),
        ("false && self.missing", False),
        ("self.missing || true", True),
        ("[1, 2] + [3] == [1, 2, 3] && 1 != 'a'", True),
    ],
)
def test_rules_evaluate_as_cel(rule: str, value: Any) -> None:
    obj = {"x": 1, "y": 2, "minReplicas": 3, "replicas": 2, "name": "alice", "tags": ["db", "web"]}
    assert ev(rule, obj) == value


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ("self.z > 1", "no such key: z"),
        ("self.x < 'a'", "no such overload: _<_(int, string)"),
        ("self.x / 0 == 1", "division by zero"),
        ("self.tags[5] == 'a'", "index out of bounds: 5"),
        ("self.x && true", "no such overload"),
        ("9223372036854775807 + self.x > 0", "integer overflow"),
    ],
)
def test_runtime_errors(rule: str, error: str) -> None:
    with pytest.raises(cel.CelError, match=error.replace("(", r"\(").replace(")", r"\)")):
        ev(rule, {"x": 1, "tags": ["a"]})


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ("self.x <", "Syntax error: unexpected end of input"),
        ("self.x.quantity()", "undeclared reference to 'quantity'"),
        ("other.x == 1", "undeclared reference to 'other'"),
        ("has(self)", "invalid argument to has() macro"),
        ("{'a': 1}", "Syntax error"),
        ("self.x == 1u", "unsigned integers are not supported"),
    ],
)
def test_unsupported_or_bad_rules_do_not_compile(rule: str, error: str) -> None:
    with pytest.raises(cel.CelError) as e:
        cel.compile_rule(rule)
    assert error in str(e.value)


def test_transition_rules_and_ratcheting() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "mode": {
                        "type": "string",
                        "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "mode is immutable"}],
                    },
                    "name": {"type": "string", "x-kubernetes-validations": [{"rule": "self.startsWith('a')"}]},
                },
            }
        },
    }
    rdef = ResourceDef("g.io", "v1", "things", "Thing", True, schema=schema, custom=True)

    def errs(new: Any, old: Any = None) -> list[str]:
        return [str(e) for e in crd.validate_rules(rdef, {"spec": new}, None if old is None else {"spec": old})]

    assert errs({"mode": "a", "name": "al"}) == []  # no old object: transition rule skipped
    assert errs({"mode": "b", "name": "al"}, {"mode": "a", "name": "al"}) == [
        'spec.mode: Invalid value: "string": mode is immutable'
    ]
    assert errs({"mode": "b", "name": "al"}, {"name": "al"}) == []  # no old value there
    assert errs({"name": "bob"}) == ["spec.name: Invalid value: \"string\": failed rule: self.startsWith('a')"]
    # an unchanged invalid value does not block other changes (validation ratcheting)
    assert errs({"name": "bob", "mode": "x"}, {"name": "bob"}) == []
    assert errs({"name": "bo"}, {"name": "bob"}) == [
        "spec.name: Invalid value: \"string\": failed rule: self.startsWith('a')"
    ]
