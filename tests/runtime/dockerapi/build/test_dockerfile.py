"""The Dockerfile parser and word lexer: moby/buildkit's semantics and dockerd 20.10's messages."""

from __future__ import annotations

import pytest

from runtime import errors
from runtime.dockerapi.build.dockerfile import (
    Lexer,
    ParseError,
    go_duration,
    go_quote_list,
    parse,
    parse_line,
    process,
    process_words,
)


def only(text: str) -> list:  # the instructions of a one-stage Dockerfile
    df = parse(text)
    assert len(df.stages) == 1
    return df.stages[0].instructions


def test_comments_blank_lines_and_case_insensitive_instructions() -> None:
    df = parse("# a comment\n\nfrom busybox AS Build\n  # indented comment\nrun echo hi\n")
    (stage,) = df.stages
    assert (stage.base, stage.name, stage.line) == ("busybox", "build", 3)
    (ins,) = stage.instructions
    assert (ins.cmd, ins.args, ins.json, ins.line, ins.original) == ("run", ["echo hi"], False, 5, "run echo hi")


def test_continuations_skip_comment_lines_and_warn_on_empty_ones() -> None:
    df = parse("FROM busybox\nRUN echo a \\\n# inside\n    && echo b \\\n\n    && echo c\n")
    (ins,) = df.stages[0].instructions
    assert ins.args == ["echo a     && echo b     && echo c"]
    assert ins.line == 2
    assert df.warnings[0].startswith("[WARNING]: Empty continuation line found in:")


def test_escape_directive_switches_to_backtick() -> None:
    text = "# escape=`\nFROM busybox\nRUN echo a `\n    b\nCOPY a\\b c\\\n"
    df = parse(text)
    assert df.escape == "`"
    run, copy = df.stages[0].instructions
    assert run.args == ["echo a     b"]
    assert copy.args == ["a\\b", "c\\"]  # a backslash is an ordinary character now


def test_directives_only_count_at_the_very_top() -> None:
    df = parse("FROM busybox\n# escape=`\nRUN echo a \\\n  b\n")
    assert df.escape == "\\"
    assert df.stages[0].instructions[0].args == ["echo a   b"]
    with pytest.raises(ParseError, match="only one escape parser directive can be used"):
        parse("# escape=`\n# escape=\\\nFROM busybox\n")
    with pytest.raises(ParseError, match="invalid escape token 'x' does not match ` or"):
        parse("# escape=x\nFROM busybox\n")
    assert parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM busybox\n").escape == "`"


def test_unknown_instruction_names_the_line_like_docker() -> None:
    with pytest.raises(ParseError) as exc:
        parse("FROM busybox\n\n# c\nRUN true\nENV a=b\n\nRUNN echo\n")
    assert str(exc.value) == "Dockerfile parse error line 7: unknown instruction: RUNN"
    assert isinstance(exc.value, errors.BadRequest)


def test_unknown_and_duplicate_flags() -> None:
    with pytest.raises(ParseError, match=r"^Dockerfile parse error line 2: Unknown flag: mount$"):
        parse("FROM busybox\nRUN --mount=type=cache,target=/x true\n")
    with pytest.raises(ParseError, match="Unknown flag: from"):
        parse("FROM busybox\nADD --from=a x y\n")
    with pytest.raises(ParseError, match="Duplicate flag specified: chown"):
        parse("FROM busybox\nCOPY --chown=a --chown=b x y\n")
    with pytest.raises(ParseError, match="Missing a value on flag: from"):
        parse("FROM busybox\nCOPY --from x y\n")
    (copy,) = only('FROM busybox\nCOPY --chown="app:app" --from=build /a /b\n')
    assert copy.flags == {"chown": "app:app", "from": "build"}
    assert copy.args == ["/a", "/b"]


def test_exec_form_and_shell_form() -> None:
    run, cmd, ep, bad = only(
        'FROM busybox\nRUN ["echo", "a b"]\nCMD [ "x" ] trailing\nENTRYPOINT echo ["not json"\nCMD [oops]\n'
    )
    assert (run.json, run.args) == (True, ["echo", "a b"])
    assert (cmd.json, cmd.args) == (True, ["x"])  # like Go's json.Decoder: the rest is ignored
    assert (ep.json, ep.args) == (False, ['echo ["not json"'])
    assert (bad.json, bad.args) == (False, ["[oops]"])  # invalid JSON falls back to shell form
    with pytest.raises(ParseError, match="arrays must be comprised of strings only"):
        parse("FROM busybox\nCMD [1, 2]\n")


def test_env_and_label_pairs_and_legacy_form() -> None:
    env1, env2, label = only(
        'FROM busybox\nENV A=1 B="two words" C=x\\ y\nENV LEGACY value with spaces\n'
        'LABEL "com.example.v"="1.0" desc=\'a b\'\n'
    )
    assert env1.pairs() == [("A", "1"), ("B", '"two words"'), ("C", "x\\ y")]
    assert env2.pairs() == [("LEGACY", "value with spaces")]
    assert label.pairs() == [('"com.example.v"', '"1.0"'), ("desc", "'a b'")]
    with pytest.raises(ParseError, match=r"^Dockerfile parse error line 2: ENV must have two arguments$"):
        parse("FROM busybox\nENV ONLY\n")
    with pytest.raises(ParseError, match=r'can\'t find = in "c"\. Must be of the form: name=value'):
        parse("FROM busybox\nENV a=b c\n")
    with pytest.raises(ParseError, match="LABEL names can not be blank"):
        parse("FROM busybox\nLABEL =x\n")


def test_arg_before_from_is_a_meta_arg() -> None:
    df = parse("ARG V=1.36\nARG OTHER\nFROM busybox:${V}\nARG IN_STAGE=x\n")
    assert [a.args for a in df.meta_args] == [["V=1.36"], ["OTHER"]]
    assert df.stages[0].base == "busybox:${V}"
    assert df.stages[0].instructions[0].args == ["IN_STAGE=x"]


def test_from_forms_and_errors() -> None:
    df = parse("FROM --platform=linux/amd64 busybox as b1\nFROM b1\nFROM scratch\n")
    assert [(s.base, s.name, s.platform) for s in df.stages] == [
        ("busybox", "b1", "linux/amd64"),
        ("b1", "", ""),
        ("scratch", "", ""),
    ]
    with pytest.raises(ParseError, match="FROM requires either one or three arguments"):
        parse("FROM busybox as\n")
    with pytest.raises(ParseError, match='invalid name for build stage: "1st", name can\'t start with a number'):
        parse("FROM busybox AS 1st\n")
    with pytest.raises(ParseError, match=r"^no build stage in current context$"):
        parse("RUN true\nFROM busybox\n")


def test_copy_add_volume_lists_and_argument_counts() -> None:
    copy, add, vol1, vol2 = only('FROM busybox\nCOPY a b /dst/\nADD ["x y", "/z"]\nVOLUME /a /b\nVOLUME ["/c"]\n')
    assert copy.args == ["a", "b", "/dst/"]
    assert (add.json, add.args) == (True, ["x y", "/z"])
    assert vol1.args == ["/a", "/b"] and vol2.args == ["/c"]
    with pytest.raises(ParseError, match="COPY requires at least two arguments, but only one was provided"):
        parse("FROM busybox\nCOPY onlyone\n")
    for bad, msg in (
        ("WORKDIR", "WORKDIR requires exactly one argument"),
        ("USER", "USER requires exactly one argument"),
        ("EXPOSE", "EXPOSE requires at least one argument"),
        ("VOLUME", "VOLUME requires at least one argument"),
        ("SHELL /bin/bash -c", "SHELL requires the arguments to be in JSON form"),
    ):
        with pytest.raises(ParseError, match=msg):
            parse(f"FROM busybox\n{bad}\n")


def test_healthcheck_and_onbuild() -> None:
    hc, none, ob = only(
        "FROM busybox\nHEALTHCHECK --interval=5m --timeout=3s --retries=3 CMD curl -f http://localhost/\n"
        "HEALTHCHECK NONE\nONBUILD RUN echo triggered\n"
    )
    assert hc.health == {
        "Test": ["CMD-SHELL", "curl -f http://localhost/"],
        "Interval": 300 * 10**9,
        "Timeout": 3 * 10**9,
        "StartPeriod": 0,
        "Retries": 3,
    }
    assert none.health == {"Test": ["NONE"]}
    assert ob.expression.strip() == "RUN echo triggered"
    with pytest.raises(ParseError, match=r"Unknown type \"FOO\" in HEALTHCHECK \(try CMD\)"):
        parse("FROM busybox\nHEALTHCHECK FOO x\n")
    with pytest.raises(ParseError, match="Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"):
        parse("FROM busybox\nONBUILD ONBUILD RUN x\n")
    with pytest.raises(ParseError, match="FROM isn't allowed as an ONBUILD trigger"):
        parse("FROM busybox\nONBUILD FROM x\n")
    assert parse_line("RUN echo hi").args == ["echo hi"]


def test_lexer_substitution_and_quotes() -> None:
    env = ["A=apple", "EMPTY=", "SP=x y"]
    cases = {
        "$A": "apple",
        "${A}": "apple",
        "${A}s": "apples",
        "${MISSING:-dflt}": "dflt",
        "${EMPTY:-dflt}": "dflt",
        "${A:-dflt}": "apple",
        "${A:+set}": "set",
        "${MISSING:+set}": "",
        "\\$A": "$A",
        "'$A'": "$A",
        '"$A b"': "apple b",
        '"a\\"b"': 'a"b',
        "a\\ b": "a b",
        "$": "$",
        "${A:-${MISSING:-nested}}": "apple",
        "$1x": "x",
    }
    for word, want in cases.items():
        assert process(word, env) == want, word
    assert Lexer("`").process_word("`$A", env) == "$A"
    assert process_words("$SP z 'q r'", env) == ["x", "y", "z", "q r"]
    with pytest.raises(errors.BadRequest, match="missing ':' in substitution"):
        process("${A-x}", env)
    with pytest.raises(errors.BadRequest, match="bad substitution"):
        process("${}", env)
    with pytest.raises(errors.BadRequest, match="unexpected end of statement while looking for matching double-quote"):
        process('"open', env)


def test_go_formatting_helpers() -> None:
    assert go_quote_list(["/bin/sh", "-c", 'echo "hi"\n']) == '["/bin/sh" "-c" "echo \\"hi\\"\\n"]'
    assert [go_duration(n) for n in (0, 3 * 10**9, 300 * 10**9, 3_723 * 10**9, 1_500_000)] == [
        "0s",
        "3s",
        "5m0s",
        "1h2m3s",
        "1.5ms",
    ]
