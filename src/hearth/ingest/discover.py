"""Turn command-line inputs (files, folders, globs) into the sorted list of files to ingest.

Also answers `covers(source)`: whether a stored document lies within what was asked for, so
the indexer can remove documents that are covered but gone from disk.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hearth.ingest.globs import glob_regex
from hearth.ingest.loaders import is_supported

SKIP_DIRS = {"__pycache__", "node_modules"}  # besides every hidden (dot) folder
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass
class Discovery:
    """What `discover` found: the files, the inputs that matched nothing, and what it left
    out of folder walks because no loader reads their type."""

    files: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)
    roots: list[Path] = field(default_factory=list)  # folders (and absent inputs) given
    explicit: set[Path] = field(default_factory=set)  # files given by name
    patterns: list[re.Pattern[str]] = field(default_factory=list)  # globs, as absolute regexes

    def covers(self, source: str) -> bool:
        """True when the absolute path `source` is a given file, lies under a given folder,
        or matches a given glob (or lies under a folder a glob matched)."""
        try:
            path = Path(source)
        except (TypeError, ValueError):
            return False
        if not path.is_absolute():
            return False
        if path in self.explicit:
            return True
        if any(path == root or path.is_relative_to(root) for root in self.roots):
            return True
        candidates = [path.as_posix(), *(p.as_posix() for p in path.parents)]
        return any(p.fullmatch(c) for p in self.patterns for c in candidates)


def discover(inputs: list[str], supported_only: bool = True) -> Discovery:
    """Expand `inputs` (files, folders, globs with *, ?, ** relative to the current folder
    or absolute) into absolute, resolved, de-duplicated, sorted files.

    Folders recurse, skipping hidden folders and files, __pycache__ and node_modules; with
    `supported_only` their files of types no loader reads go to `.ignored` instead. Files
    named explicitly or matched by a glob are always kept (their load reports the problem).
    An input that does not exist still `covers` its path, so its documents can be removed.
    """
    found = Discovery()
    files: set[Path] = set()
    ignored: set[Path] = set()
    keep: Callable[[Path], bool] = is_supported if supported_only else (lambda _p: True)
    for raw in inputs:
        text = os.path.expanduser(str(raw))
        if _GLOB_CHARS.search(text) and not os.path.lexists(text):  # "notes[1].md" may exist
            absolute = os.path.abspath(text)
            found.patterns.append(glob_regex(_resolved_prefix(absolute)))
            matches = glob.glob(absolute, recursive=True)
            before = len(files)
            for match in matches:
                path = Path(match)
                if path.is_dir():
                    _walk(path.resolve(), keep, files, ignored)
                elif path.is_file():
                    files.add(path.resolve())
            if len(files) == before and not matches:
                found.missing.append(str(raw))
            continue
        path = Path(text).absolute()
        if path.is_dir():
            root = path.resolve()
            found.roots.append(root)
            _walk(root, keep, files, ignored)
        elif path.is_file():
            resolved = path.resolve()
            found.explicit.add(resolved)
            files.add(resolved)
        else:
            found.missing.append(str(raw))
            found.roots.append(Path(os.path.normpath(path)))
    found.files = sorted(files)
    found.ignored = sorted(ignored - files)
    return found


def _walk(root: Path, keep: Callable[[Path], bool], files: set[Path], ignored: set[Path]):
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
        for name in names:
            if name.startswith("."):
                continue
            path = Path(folder, name)
            if not path.is_file():  # broken symlinks, sockets...
                continue
            (files if keep(path) else ignored).add(path.resolve())


def _resolved_prefix(pattern: str) -> str:
    """Resolve symlinks in the glob's literal leading folders, as the found files are."""
    parts = Path(pattern).parts
    literal = 0
    while literal < len(parts) - 1 and not _GLOB_CHARS.search(parts[literal]):
        literal += 1
    base = Path(*parts[:literal]).resolve() if literal else Path(parts[0])
    return str(Path(base, *parts[literal:]))
