"""The original's ``KEY=value`` config file, parsed as data (it is never executed).

Accepted: ``NAME=value`` and ``export NAME=value`` statements, ``#`` comments,
single quotes (literal, may span lines), double quotes (``\\"`` ``\\\\`` ``\\$``
escapes and ``$NAME``/``${NAME}`` expansion), backslash escapes in bare words,
and ``;`` between statements. Anything else (commands, ``$(...)``, backticks,
``if``...) is an error naming the file and the line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ConfSyntaxError(ValueError):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


def parse(text: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables assigned by the file, in order; ``$NAME`` expands earlier ones, then ``env``."""
    env = os.environ if env is None else env
    out: dict[str, str] = {}
    i, n, line = 0, len(text), 1

    def lookup(name: str) -> str:
        return out[name] if name in out else env.get(name, "")

    def expand(pos: int) -> tuple[str, int]:
        # text[pos] == "$"
        if pos + 1 < n and text[pos + 1] == "{":
            end = text.find("}", pos + 2)
            name = text[pos + 2:end] if end > 0 else ""
            if not _NAME_RE.fullmatch(name):
                raise ConfSyntaxError(line, "only ${NAME} expansions are supported")
            return lookup(name), end + 1
        m = _NAME_RE.match(text, pos + 1)
        if m:
            return lookup(m.group()), m.end()
        if pos + 1 < n and text[pos + 1] == "(":
            raise ConfSyntaxError(line, "command substitution is not allowed")
        return "$", pos + 1

    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
            continue
        if c in " \t\r;":
            i += 1
            continue
        if c == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        m = _NAME_RE.match(text, i)
        if m and m.group() == "export" and m.end() < n and text[m.end()] in " \t":
            i = m.end()
            while i < n and text[i] in " \t":
                i += 1
            m = _NAME_RE.match(text, i)
        if not m or m.end() >= n or text[m.end()] != "=":
            word = text[i:text.find("\n", i) if "\n" in text[i:] else n].strip()
            raise ConfSyntaxError(line, f"expected NAME=value, found {word[:40]!r}")
        name = m.group()
        i = m.end() + 1
        start_line = line
        value: list[str] = []
        while i < n and text[i] not in " \t\r\n;":
            c = text[i]
            if c == "'":
                end = text.find("'", i + 1)
                if end < 0:
                    raise ConfSyntaxError(start_line, "unterminated single quote")
                chunk = text[i + 1:end]
                line += chunk.count("\n")
                value.append(chunk)
                i = end + 1
            elif c == '"':
                i += 1
                while True:
                    if i >= n:
                        raise ConfSyntaxError(start_line, "unterminated double quote")
                    c = text[i]
                    if c == '"':
                        i += 1
                        break
                    if c == "\\" and i + 1 < n and text[i + 1] in '"\\$`\n':
                        if text[i + 1] != "\n":
                            value.append(text[i + 1])
                        else:
                            line += 1
                        i += 2
                    elif c == "$":
                        s, i = expand(i)
                        value.append(s)
                    elif c == "`":
                        raise ConfSyntaxError(line, "command substitution is not allowed")
                    else:
                        if c == "\n":
                            line += 1
                        value.append(c)
                        i += 1
            elif c == "\\":
                if i + 1 < n and text[i + 1] == "\n":
                    line += 1
                elif i + 1 < n:
                    value.append(text[i + 1])
                i += 2
            elif c == "$":
                s, i = expand(i)
                value.append(s)
            elif c in "`|&<>()":
                raise ConfSyntaxError(line, f"shell syntax {c!r} is not allowed")
            else:
                value.append(c)
                i += 1
        out[name] = "".join(value)
        # after the value: blanks, then a comment, ';' or the end of the line
        while i < n and text[i] in " \t\r":
            i += 1
        nxt = _NAME_RE.match(text, i)
        if nxt and nxt.end() < n and text[nxt.end()] == "=":
            continue  # A=1 B=2: several assignments on one line
        if i < n and text[i] not in "\n;#":
            raise ConfSyntaxError(line, f"unexpected text after {name}= (quote values with spaces)")
    return out
