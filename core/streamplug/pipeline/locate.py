"""Line numbers of TOML keys.

``tomllib`` returns plain dicts with no positions, yet an error in a pipeline file is only
useful when it names the line. This scanner reads the text once and records the line of
every table header and every ``key = value``, as a path of keys (array-of-tables entries
are numbered: ``("transform", 1, "map")``). It understands what pipeline files use —
bare, quoted and dotted keys, ``[table]``, ``[[array]]``, multi-line strings and arrays —
and falls back to the nearest enclosing table for anything it cannot place (a key inside
an inline table is reported on the inline table's line).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

PathElement = str | int
Path = tuple[PathElement, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _parse_key(text: str, pos: int) -> tuple[list[str], int] | None:
    """Parse a (possibly dotted, possibly quoted) key at ``pos``; return its parts and the
    position after it, or None when no key starts there."""
    parts: list[str] = []
    n = len(text)
    while True:
        while pos < n and text[pos] in " \t":
            pos += 1
        if pos >= n:
            return None
        ch = text[pos]
        if ch in "\"'":
            end = pos + 1
            while end < n and text[end] != ch:
                end += 2 if ch == '"' and text[end] == "\\" else 1
            if end >= n:
                return None
            raw = text[pos + 1 : end]
            parts.append(raw.encode().decode("unicode_escape") if ch == '"' else raw)
            pos = end + 1
        else:
            m = _BARE.match(text, pos)
            if not m:
                return None
            parts.append(m.group(0))
            pos = m.end()
        while pos < n and text[pos] in " \t":
            pos += 1
        if pos < n and text[pos] == ".":
            pos += 1
            continue
        return parts, pos


def _strip_comment(line: str) -> str:
    """The line without a trailing comment (a ``#`` outside quotes)."""
    quote: str | None = None
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i]
        i += 1
    return line


class KeyLocator:
    """Maps key paths of one TOML document to 1-based line numbers."""

    def __init__(self, text: str) -> None:
        self.lines: dict[Path, int] = {}
        self._array_counts: dict[tuple[str, ...], int] = {}
        self._scan(text)

    def _scan(self, text: str) -> None:
        table: Path = ()
        array_counts = self._array_counts
        in_multiline: str | None = None  # the closing delimiter of a multi-line string
        bracket_depth = 0  # inside a multi-line array value
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw
            if in_multiline is not None:
                if in_multiline in line:
                    in_multiline = None
                continue
            if bracket_depth > 0:
                bracket_depth += self._bracket_balance(_strip_comment(line))
                continue
            stripped = _strip_comment(line).strip()
            if not stripped:
                continue
            if stripped.startswith("[["):
                parsed = _parse_key(stripped, 2)
                if parsed is None:
                    continue
                parts = tuple(parsed[0])
                index = array_counts.get(parts, 0)
                array_counts[parts] = index + 1
                # Entries of a nested array restart their own numbering under each parent.
                for key in [
                    k for k in array_counts if len(k) > len(parts) and k[: len(parts)] == parts
                ]:
                    del array_counts[key]
                table = (*self._resolve_table(parts), index)
                self.lines.setdefault(table[:-1], number)
                self.lines[table] = number
                continue
            if stripped.startswith("["):
                parsed = _parse_key(stripped, 1)
                if parsed is None:
                    continue
                table = self._resolve_table(tuple(parsed[0]))
                self.lines[table] = number
                continue
            parsed = _parse_key(stripped, 0)
            if parsed is None:
                continue
            parts_list, pos = parsed
            if pos >= len(stripped) or stripped[pos] != "=":
                continue
            path = table
            for part in parts_list:
                path = (*path, part)
                self.lines.setdefault(path, number)
            value = stripped[pos + 1 :].strip()
            for delim in ('"""', "'''"):
                if value.startswith(delim) and value.count(delim) == 1:
                    in_multiline = delim
            if value.startswith("["):
                balance = self._bracket_balance(value)
                if balance > 0:
                    bracket_depth = balance

    def _resolve_table(self, parts: tuple[str, ...]) -> Path:
        """A header path with array-of-tables indices filled in: ``[transform.options]``
        after two ``[[transform]]`` headers is ``("transform", 1, "options")``."""
        resolved: list[PathElement] = []
        for i, part in enumerate(parts):
            resolved.append(part)
            count = self._array_counts.get(parts[: i + 1])
            if count and i < len(parts) - 1:
                resolved.append(count - 1)
        return tuple(resolved)

    @staticmethod
    def _bracket_balance(text: str) -> int:
        depth = 0
        quote: str | None = None
        for ch in text:
            if quote:
                if ch == quote:
                    quote = None
            elif ch in "\"'":
                quote = ch
            elif ch == "[":
                depth += 1
            elif ch == "]":
                depth -= 1
        return depth

    def line(self, path: Sequence[PathElement]) -> int | None:
        """The line of ``path``, or of its nearest enclosing key or table that has one."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return None


def format_path(path: Sequence[PathElement]) -> str:
    """A path as a reader of the file would write it: ``transform[2].map``, ``source.properties."a.b"``.
    Array indices are shown 1-based, like the n-th ``[[transform]]`` block."""
    out = ""
    for element in path:
        if isinstance(element, int):
            out += f"[{element + 1}]"
            continue
        text = element if _BARE.fullmatch(element) else f'"{element}"'
        out += f".{text}" if out else text
    return out
