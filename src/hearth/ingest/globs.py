"""Path globs as regexes, shared by discovery (which files to read) and the store's filters.

Hand-written because fnmatch lets `*` cross folders; here `*` and `?` stay inside one path
part and `**` spans folders, as shells and .gitignore do. Match with `fullmatch`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from hearth.errors import HearthError


class GlobError(HearthError, ValueError):
    """A glob pattern that cannot be read (e.g. a reversed range like `[z-a]`)."""


@lru_cache(maxsize=256)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """Translate a glob to a regex over posix paths: `**` spans folders, `*`/`?` do not."""
    out = []
    i = 0
    pattern = Path(pattern).as_posix()
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (close := pattern.find("]", i + 2)) >= 0:
            body = pattern[i + 1 : close]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = close + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    try:
        return re.compile("".join(out))
    except re.error as exc:
        raise GlobError(f"invalid glob pattern {pattern!r}: {exc.msg}") from None
