"""Dockerfile parsing, as dockerd 20.10's classic builder does it.

Two layers, mirroring moby/buildkit's ``frontend/dockerfile`` packages:

``parse(text)``
    The *parser* (``parser/parser.go``): parser directives (``# escape=``, ``# syntax=``)
    only before anything else, comment lines (also inside continuations), line
    continuations with the escape character, blank continuation lines (a warning, as in
    Docker), leading ``--flags`` split off every instruction, and per-instruction argument
    parsing: JSON (exec) form with fallback to shell form for RUN/CMD/ENTRYPOINT, ``ENV``
    and ``LABEL`` pairs (``k=v ...`` and the legacy ``k v``), words for ``ARG``, whitespace
    lists for FROM/EXPOSE/COPY/ADD/VOLUME, HEALTHCHECK's type + command. Then the
    *instruction* checks (``instructions/parse.go``): argument counts, known flags,
    stage names, with Docker's wording: ``Dockerfile parse error line 7: unknown
    instruction: RUNN``.

``Lexer``
    The word processor (``shell/lex.go``) the builder applies to the instructions Docker
    substitutes variables in (FROM, ADD, COPY, ENV, ARG, EXPOSE, LABEL, STOPSIGNAL, USER,
    VOLUME, WORKDIR): quotes, the escape character, ``$v``, ``${v}``, ``${v:-word}``,
    ``${v:+word}``. Substitution happens at build time (the values depend on ENV and ARG
    in effect), so instructions keep their arguments raw.

Nothing here touches the filesystem; ``builder.py`` executes the result.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from runtime import errors

DEFAULT_ESCAPE = "\\"
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_WHITESPACE = re.compile(r"\s+")
_LIST_SPLIT = re.compile(r"[\t\v\f\r ]+")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_\.]*$")

# The instructions and the --flags each accepts (chmod is parsed, then refused by the
# classic builder with its own message, as dockerd 20.10 does).
FLAGS: dict[str, tuple[str, ...]] = {
    "from": ("platform",),
    "run": (),
    "cmd": (),
    "entrypoint": (),
    "env": (),
    "arg": (),
    "label": (),
    "expose": (),
    "workdir": (),
    "user": (),
    "copy": ("chown", "from", "chmod"),
    "add": ("chown", "chmod"),
    "volume": (),
    "stopsignal": (),
    "healthcheck": ("interval", "timeout", "start-period", "retries"),
    "shell": (),
    "onbuild": (),
    "maintainer": (),
}


class ParseError(errors.BadRequest):
    """A Dockerfile the builder cannot read; the message names the line, as Docker's does."""


class _InstructionError(Exception):
    """An error inside one instruction, before the line number is attached."""


@dataclass
class Instruction:
    """One instruction: ``cmd`` lower-case, ``args`` unexpanded, ``original`` as Docker prints it."""

    cmd: str
    args: list[str]
    original: str
    line: int
    flags: dict[str, str] = field(default_factory=dict)
    json: bool = False  # exec form (RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK CMD, COPY/ADD/VOLUME lists)
    health: dict[str, object] | None = None  # HEALTHCHECK: the parsed HealthConfig
    expression: str = ""  # ONBUILD: the trigger text

    def pairs(self) -> list[tuple[str, str]]:
        """ENV / LABEL arguments as (key, raw value) pairs."""
        return [(self.args[i], self.args[i + 1]) for i in range(0, len(self.args), 2)]


@dataclass
class Stage:
    base: str  # unexpanded image reference
    name: str  # lower-case stage name, "" if unnamed
    original: str
    line: int
    platform: str = ""
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Dockerfile:
    escape: str
    meta_args: list[Instruction]  # ARGs before the first FROM
    stages: list[Stage]
    warnings: list[str]


# -- the shell-word lexer ------------------------------------------------------------------------


class Lexer:
    """moby's ``shell.Lex``: ``process_word`` for one word, ``process_words`` splits (EXPOSE)."""

    def __init__(self, escape: str = DEFAULT_ESCAPE) -> None:
        self.escape = escape

    def process_word(self, word: str, env: list[str]) -> str:
        return _Word(word, env, self.escape).process()[0]

    def process_words(self, word: str, env: list[str]) -> list[str]:
        return _Word(word, env, self.escape).process()[1]


class _Words:
    """Word splitting of the lexer: unquoted whitespace separates words."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.word = ""
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace() and self.in_word:
            if self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        elif not ch.isspace():
            self.add_raw(ch)

    def add_raw(self, s: str) -> None:
        self.word += s
        self.in_word = True

    def add_string(self, s: str) -> None:
        for ch in s:
            self.add_char(ch)

    def result(self) -> list[str]:
        if self.in_word:
            self.words.append(self.word)
            self.word = ""
            self.in_word = False
        return self.words


class _Word:
    def __init__(self, word: str, env: list[str], escape: str) -> None:
        self.src = word
        self.pos = 0
        self.env = env
        self.escape = escape

    def peek(self) -> str:
        return self.src[self.pos] if self.pos < len(self.src) else ""

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch

    def getenv(self, name: str) -> str:
        for item in self.env:
            key, eq, value = item.partition("=")
            if key == name:
                return value if eq else ""
        return ""

    def process(self) -> tuple[str, list[str]]:
        return self.stop_on("")

    def stop_on(self, stop: str) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        while self.peek():
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                return "".join(result), words.result()
            if ch == "'":
                tmp = self.single_quote()
                result.append(tmp)
                words.add_raw(tmp)
            elif ch == '"':
                tmp = self.double_quote()
                result.append(tmp)
                words.add_raw(tmp)
            elif ch == "$":
                tmp = self.dollar()
                result.append(tmp)
                words.add_string(tmp)
            else:
                ch = self.next()
                if ch == self.escape:
                    ch = self.next()
                    if not ch:
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        if stop:
            raise _InstructionError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.result()

    def single_quote(self) -> str:
        self.next()
        out: list[str] = []
        while True:
            ch = self.next()
            if not ch:
                raise _InstructionError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        self.next()
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise _InstructionError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                nxt = self.peek()
                if not nxt:
                    continue
                if nxt in ('"', "$", self.escape):
                    ch = self.next()
            out.append(ch)

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            return self.getenv(name) if name else "$"
        self.next()
        ch = self.peek()
        if not ch:
            raise _InstructionError("syntax error: missing '}'")
        if ch in "{}:":
            raise _InstructionError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if ch == "}":
            return self.getenv(name)
        if ch == ":":
            modifier = self.next()
            try:
                word, _ = self.stop_on("}")
            except _InstructionError:
                if not self.peek():
                    raise _InstructionError("syntax error: missing '}'") from None
                raise
            value = self.getenv(name)
            if modifier == "+":
                return word if value else value
            if modifier == "-":
                return value or word
            raise _InstructionError(f"unsupported modifier ({modifier}) in substitution")
        raise _InstructionError("missing ':' in substitution")

    def name(self) -> str:
        out: list[str] = []
        while self.peek():
            ch = self.peek()
            if not out and ch.isdigit():
                while self.peek().isdigit():
                    out.append(self.next())
                return "".join(out)
            if not (ch.isalnum() or ch == "_"):
                break
            out.append(self.next())
        return "".join(out)


# -- the line parser -----------------------------------------------------------------------------


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _trim_continuation(line: str, escape: str) -> tuple[str, bool]:
    """(line without a trailing escape, is this the end of the logical line)."""
    stripped = line.rstrip(" \t")
    if stripped.endswith(escape):
        return stripped[: -len(escape)], False
    return line, True


def _extract_flags(line: str) -> tuple[str, list[str]]:
    """moby's ``extractBuilderFlags``: leading ``--name=value`` words, quotes removed."""
    words: list[str] = []
    word = ""
    phase = "spaces"
    quote = ""
    blank_ok = False
    pos = 0
    n = len(line)
    while pos <= n:
        ch = line[pos] if pos < n else ""
        if phase == "spaces":
            if pos == n:
                break
            if ch.isspace():
                pos += 1
                continue
            if ch != "-" or pos + 1 == n or line[pos + 1] != "-":
                return line[pos:], words
            phase = "word"
        if phase in ("word", "quote") and pos == n:
            if word != "--" and (blank_ok or word):
                words.append(word)
            break
        if phase == "word":
            if ch.isspace():
                phase = "spaces"
                if word == "--":
                    return line[pos:], words
                if blank_ok or word:
                    words.append(word)
                word = ""
                blank_ok = False
                pos += 1
                continue
            if ch in "'\"":
                quote = ch
                blank_ok = True
                phase = "quote"
                pos += 1
                continue
            if ch == "\\":
                if pos + 1 == n:
                    pos += 1
                    continue
                pos += 1
                ch = line[pos]
            word += ch
            pos += 1
            continue
        # inside quotes
        if ch == quote:
            phase = "word"
            pos += 1
            continue
        if ch == "\\":
            if pos + 1 == n:
                phase = "word"
                pos += 1
                continue
            pos += 1
            ch = line[pos]
        word += ch
        pos += 1
    return "", words


def _parse_words(rest: str, escape: str) -> list[str]:
    """moby's ``parseWords``: whitespace-separated words, quotes and escapes kept verbatim."""
    words: list[str] = []
    word = ""
    phase = "spaces"
    quote = ""
    blank_ok = False
    pos = 0
    n = len(rest)
    while pos <= n:
        ch = rest[pos] if pos < n else ""
        if phase == "spaces":
            if pos == n:
                break
            if ch.isspace():
                pos += 1
                continue
            phase = "word"
        if phase in ("word", "quote") and pos == n:
            if blank_ok or word:
                words.append(word)
            break
        if phase == "word":
            if ch.isspace():
                phase = "spaces"
                if blank_ok or word:
                    words.append(word)
                word = ""
                blank_ok = False
                pos += 1
                continue
            if ch in "'\"":
                quote = ch
                blank_ok = True
                phase = "quote"
            if ch == escape:
                if pos + 1 == n:
                    pos += 1
                    continue
                word += ch
                pos += 1
                ch = rest[pos]
            word += ch
            pos += 1
            continue
        if ch == quote:
            phase = "word"
        if ch == escape and quote != "'":
            if pos + 1 == n:
                phase = "word"
                pos += 1
                continue
            pos += 1
            word += ch
            ch = rest[pos]
        word += ch
        pos += 1
    return words


class _NotStringArray(_InstructionError):
    pass


def _parse_json(rest: str) -> list[str] | None:
    """A JSON array of strings (trailing text ignored, as Go's json.Decoder does); None if
    ``rest`` is not JSON; raises for a JSON array holding anything but strings."""
    rest = rest.lstrip()
    if not rest.startswith("["):
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(rest)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise _NotStringArray("when using JSON array syntax, arrays must be comprised of strings only")
    return value


def _name_val(rest: str, key: str, escape: str) -> list[str]:
    words = _parse_words(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise _InstructionError(f"{key} must have two arguments")
        return [parts[0], parts[1]]
    out: list[str] = []
    for word in words:
        if "=" not in word:
            raise _InstructionError(f'Syntax error - can\'t find = in "{word}". Must be of the form: name=value')
        k, _, v = word.partition("=")
        out += [k, v]
    return out


def _parse_flags(cmd: str, words: list[str]) -> dict[str, str]:
    known = FLAGS[cmd]
    flags: dict[str, str] = {}
    for arg in words:
        if not arg.startswith("--"):
            raise _InstructionError(f"Arg should start with -- : {arg}")
        name, eq, value = arg[2:].partition("=")
        if name not in known:
            raise _InstructionError(f"Unknown flag: {name}")
        if name in flags:
            raise _InstructionError(f"Duplicate flag specified: {name}")
        if not eq:
            raise _InstructionError(f"Missing a value on flag: {name}")
        flags[name] = value
    return flags


_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` (nanoseconds) for the forms Dockerfiles use."""
    if text == "0":
        return 0
    pos = 0
    total = 0.0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if m is None:
            raise _InstructionError(f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not text:
        raise _InstructionError('time: invalid duration ""')
    return int(total)


def _healthcheck(ins: Instruction, flag_words: list[str], rest: str) -> None:
    sep = 0
    while sep < len(rest) and not rest[sep].isspace():
        sep += 1
    if sep == 0:
        raise _InstructionError("HEALTHCHECK requires at least one argument")
    typ = rest[:sep].upper()
    cmd_text = rest[sep:].lstrip()
    if typ == "NONE":
        if cmd_text:
            raise _InstructionError("HEALTHCHECK NONE takes no arguments")
        ins.health = {"Test": ["NONE"]}
        return
    ins.flags = _parse_flags("healthcheck", flag_words)
    if typ != "CMD":
        raise _InstructionError(f'Unknown type "{typ}" in HEALTHCHECK (try CMD)')
    as_json = _parse_json(cmd_text) if cmd_text else None
    test = ["CMD", *as_json] if as_json is not None else ["CMD-SHELL", cmd_text]
    if (as_json is not None and not as_json) or (as_json is None and not cmd_text):
        raise _InstructionError("Missing command after HEALTHCHECK CMD")
    health: dict[str, object] = {"Test": test}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod")):
        value = ins.flags.get(flag, "")
        ns = parse_duration(value) if value else 0
        if (value and 0 < ns < 1_000_000) or ns < 0:
            raise _InstructionError(f'Interval "{flag}" cannot be less than 1ms')
        health[key] = ns
    retries = ins.flags.get("retries", "")
    if retries:
        try:
            count = int(retries)
        except ValueError:
            raise _InstructionError(f'strconv.ParseInt: parsing "{retries}": invalid syntax') from None
        if count < 1:
            raise _InstructionError(f"--retries must be at least 1 (not {count})")
        health["Retries"] = count
    else:
        health["Retries"] = 0
    ins.health = health


def _instruction(line: str, lineno: int, escape: str) -> Instruction:
    parts = _WHITESPACE.split(line.strip(), maxsplit=1)
    word = parts[0]
    cmd = word.lower()
    rest, flag_words = _extract_flags(parts[1]) if len(parts) == 2 else ("", [])
    rest = rest.strip()
    ins = Instruction(cmd=cmd, args=[], original=line.strip(), line=lineno)
    if cmd not in FLAGS:
        raise _InstructionError(f"unknown instruction: {word.upper()}")
    upper = cmd.upper()
    if cmd == "healthcheck":
        _healthcheck(ins, flag_words, rest)
        return ins
    ins.flags = _parse_flags(cmd, flag_words)
    if cmd in ("run", "cmd", "entrypoint", "shell"):
        as_json = _parse_json(rest) if rest else None
        if as_json is not None:
            ins.args, ins.json = as_json, True
        elif rest:
            ins.args = [rest]
        if cmd == "shell":
            if not ins.args:
                raise _InstructionError("SHELL requires at least one argument")
            if not ins.json:
                raise _InstructionError("SHELL requires the arguments to be in JSON form")
    elif cmd in ("copy", "add", "volume"):
        as_json = _parse_json(rest)
        if as_json is not None:
            ins.args, ins.json = as_json, True
        else:
            ins.args = [w for w in _LIST_SPLIT.split(rest) if w]
        if cmd == "volume":
            if not ins.args:
                raise _InstructionError("VOLUME requires at least one argument")
            if any(not v.strip() for v in ins.args):
                raise _InstructionError("VOLUME specified can not be an empty string")
        elif len(ins.args) < 2:
            raise _InstructionError(
                f"{upper} requires at least two arguments, but only one was provided. "
                "Destination could not be determined."
            )
    elif cmd in ("from", "expose"):
        ins.args = [w for w in _LIST_SPLIT.split(rest) if w]
        if cmd == "expose" and not ins.args:
            raise _InstructionError("EXPOSE requires at least one argument")
        if cmd == "from":
            if len(ins.args) == 3 and ins.args[1].lower() == "as":
                if not _STAGE_NAME.match(ins.args[2].lower()):
                    raise _InstructionError(
                        f'invalid name for build stage: "{ins.args[2]}", '
                        "name can't start with a number or contain symbols"
                    )
            elif len(ins.args) != 1:
                raise _InstructionError("FROM requires either one or three arguments")
    elif cmd in ("env", "label"):
        ins.args = _name_val(rest, upper, escape)
        if not ins.args:
            raise _InstructionError(f"{upper} requires at least one argument")
        if any(not k for k, _ in ins.pairs()):
            raise _InstructionError(f"{upper} names can not be blank")
    elif cmd == "arg":
        ins.args = _parse_words(rest, escape)
        if not ins.args:
            raise _InstructionError("ARG requires exactly one argument")
        if any(a.startswith("=") for a in ins.args):
            raise _InstructionError("ARG names can not be blank")
    elif cmd == "onbuild":
        if not rest:
            raise _InstructionError("ONBUILD requires at least one argument")
        trigger = _WHITESPACE.split(rest, maxsplit=1)[0].upper()
        if trigger == "ONBUILD":
            raise _InstructionError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if trigger in ("MAINTAINER", "FROM"):
            raise _InstructionError(f"{trigger} isn't allowed as an ONBUILD trigger")
        _instruction(rest, lineno, escape)  # the trigger must itself be valid
        ins.expression = re.sub(r"(?i)^\s*ONBUILD\s*", "", line)
        ins.args = [rest]
    else:  # workdir user maintainer stopsignal: the rest of the line is the one argument
        if not rest:
            raise _InstructionError(f"{upper} requires exactly one argument")
        ins.args = [rest]
    return ins


def _logical_lines(text: str) -> tuple[str, list[tuple[int, str]], list[str]]:
    """(escape char, [(start line, joined line)], warnings) — moby's ``parser.Parse`` loop."""
    escape = DEFAULT_ESCAPE
    directives_done = False
    seen: set[str] = set()
    lines = text.splitlines()
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    out: list[tuple[int, str]] = []
    warnings: list[str] = []
    i = 0
    while i < len(lines):
        raw = lines[i].lstrip()
        i += 1
        start = i
        if not directives_done:
            m = _DIRECTIVE.match(raw)
            key = m.group(1).lower() if m else ""
            if m and key in ("escape", "syntax"):
                if key in seen:
                    raise ParseError(f"only one {key} parser directive can be used")
                seen.add(key)
                if key == "escape":
                    value = m.group(2)
                    if value not in ("`", "\\"):
                        raise ParseError(f"invalid escape token '{value}' does not match ` or \\")
                    escape = value
                continue
            directives_done = True
        if _is_comment(raw):
            continue
        line, end = _trim_continuation(raw, escape)
        if end and not line.strip():
            continue
        empty_continuation = False
        while not end and i < len(lines):
            nxt = lines[i]
            i += 1
            if _is_comment(nxt):
                continue
            if not nxt.strip():
                empty_continuation = True
                continue
            part, end = _trim_continuation(nxt, escape)
            line += part
        if empty_continuation:
            warnings.append("[WARNING]: Empty continuation line found in:\n    " + line)
        out.append((start, line))
    if warnings:
        warnings.append("[WARNING]: Empty continuation lines will become errors in a future release.")
    return escape, out, warnings


def parse(text: str) -> Dockerfile:
    """Parse a Dockerfile; ParseError with Docker's message (and line) on bad input."""
    escape, lines, warnings = _logical_lines(text)
    meta: list[Instruction] = []
    stages: list[Stage] = []
    for lineno, line in lines:
        try:
            ins = _instruction(line, lineno, escape)
        except _InstructionError as exc:
            raise ParseError(f"Dockerfile parse error line {lineno}: {exc}") from None
        if ins.cmd == "from":
            name = ins.args[2].lower() if len(ins.args) == 3 else ""
            stages.append(Stage(ins.args[0], name, ins.original, lineno, ins.flags.get("platform", "")))
        elif not stages:
            if ins.cmd != "arg":
                raise ParseError("no build stage in current context")
            meta.append(ins)
        else:
            stages[-1].instructions.append(ins)
    return Dockerfile(escape, meta, stages, warnings)


def parse_line(line: str, escape: str = DEFAULT_ESCAPE) -> Instruction:
    """One instruction on its own (ONBUILD triggers, the ``labels`` build option)."""
    try:
        return _instruction(line, 0, escape)
    except _InstructionError as exc:
        raise ParseError(str(exc)) from None


def process(word: str, env: list[str], escape: str = DEFAULT_ESCAPE) -> str:
    """``Lexer(escape).process_word`` raising BadRequest (for build-time substitution)."""
    try:
        return Lexer(escape).process_word(word, env)
    except _InstructionError as exc:
        raise errors.BadRequest(str(exc)) from None


def process_words(word: str, env: list[str], escape: str = DEFAULT_ESCAPE) -> list[str]:
    try:
        return Lexer(escape).process_words(word, env)
    except _InstructionError as exc:
        raise errors.BadRequest(str(exc)) from None


def go_quote(s: str) -> str:
    """Go's ``%q`` of a string (strconv.Quote), as Docker writes CMD/ENTRYPOINT in history."""
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\v":
            out.append("\\v")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif not ch.isprintable():
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_quote_list(items: list[str] | None) -> str:
    """Go's ``%q`` of a []string: ``["a" "b"]``."""
    return "[" + " ".join(go_quote(s) for s in (items or [])) + "]"


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String()``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 10**9:
        for unit, size in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if ns >= size:
                return sign + _trim_float(ns / size) + unit
    h, rem = divmod(ns, 3600 * 10**9)
    m, rem = divmod(rem, 60 * 10**9)
    secs = _trim_float(rem / 10**9) + "s"
    if h:
        return f"{sign}{h}h{m}m{secs}"
    if m:
        return f"{sign}{m}m{secs}"
    return sign + secs


def _trim_float(x: float) -> str:
    text = f"{x:.9f}".rstrip("0").rstrip(".")
    return text or "0"
