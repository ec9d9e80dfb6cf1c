"""A reader of nginx.conf as nginx's own parser (ngx_conf_file.c) splits it: words separated by
whitespace, ``"..."`` and ``'...'`` strings with backslash escapes, ``#`` comments to the end
of the line, ``;`` ending a directive, ``{``/``}`` opening and closing a block. The ingress
tests read what runtime/kube/node/ingress.py renders with it, so a value that broke out of its
quotes or ended a directive early shows up as a directive of its own."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Directive:
    context: tuple[str, ...]  # the enclosing blocks' names, outermost first
    name: str
    args: list[str]
    line: int


class ParseError(ValueError):
    pass


def parse(text: str) -> list[Directive]:
    out: list[Directive] = []
    stack: list[str] = []
    words: list[str] = []
    line = 1
    start_line = 1
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c in " \t\r":
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c == ";":
            if not words:
                raise ParseError(f"line {line}: unexpected ';'")
            out.append(Directive(tuple(stack), words[0], words[1:], start_line))
            words = []
            i += 1
        elif c == "{":
            if not words:
                raise ParseError(f"line {line}: unexpected '{{'")
            out.append(Directive(tuple(stack), words[0], words[1:], start_line))
            stack.append(words[0])
            words = []
            i += 1
        elif c == "}":
            if words or not stack:
                raise ParseError(f"line {line}: unexpected '}}'")
            stack.pop()
            i += 1
        elif c in "\"'":
            quote, i = c, i + 1
            buf = []
            while True:
                if i >= n:
                    raise ParseError(f"line {line}: unterminated string")
                if text[i] == "\\" and i + 1 < n:
                    buf.append(text[i : i + 2])
                    i += 2
                    continue
                if text[i] == quote:
                    i += 1
                    break
                if text[i] == "\n":
                    line += 1
                buf.append(text[i])
                i += 1
            if not words:
                start_line = line
            words.append("".join(buf))
        else:
            j = i
            while j < n and text[j] not in " \t\r\n;{}\"'":
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                j += 1
            if not words:
                start_line = line
            words.append(text[i:j])
            i = j
    if words or stack:
        raise ParseError("unexpected end of file")
    return out
