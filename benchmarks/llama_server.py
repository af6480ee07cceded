"""llama.cpp's own C++ server (`llama-server`), built from the installed llama-cpp-python's source.

The serving benchmark (serve_load.py) measures `hearth serve` against llama.cpp's server, and the
fair peer is the llama.cpp that Hearth itself runs on: this module downloads the sdist of the
*installed* llama-cpp-python version (`pip download --no-deps --no-binary :all:`), configures its
vendored llama.cpp (vendor/llama.cpp) with CMake and builds only the `llama-server` target.

Kept outside the venv and outside `make install`, in a cache folder:
    ${XDG_CACHE_HOME:-~/.cache}/hearth/llama-server/<version>/
        llama-server        the binary (statically linked to ggml/llama: no shared libs to find)
        build.json          version, sdist, CMake flags, compiler, build seconds, when
The build happens in a temporary folder next to it and only a finished binary is renamed into
place, so an interrupted build is never used; a second call is a stat. Build settings follow
llama-cpp-python's own CPU build: Release, GGML_NATIVE (this CPU's instruction set), OpenMP;
no web UI (it would be downloaded), no HTTPS, no tests or examples. ~5-10 minutes on 2 cores.

    python benchmarks/llama_server.py            # build if needed; prints {"path": ...} as JSON
    python benchmarks/llama_server.py --rebuild  # build again
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

BINARY = "llama-server"
CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",  # one self-contained binary, no LD_LIBRARY_PATH to set
    "-DGGML_NATIVE=ON",  # this CPU's instructions (AVX2/AVX512...), as a local pip build gets
    "-DGGML_OPENMP=ON",  # llama.cpp's default and llama-cpp-python's build here (OPENMP = 1)
    "-DLLAMA_BUILD_COMMON=ON",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",  # the web UI is built with npm ...
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # ... or downloaded from Hugging Face: neither is needed
    "-DLLAMA_OPENSSL=OFF",  # no HTTPS model downloads
    "-DLLAMA_CURL=OFF",  # older versions: no curl model downloads
]


class BuildError(RuntimeError):
    pass


def installed_version() -> str:
    try:
        return importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError as exc:
        raise BuildError(
            "llama-cpp-python is not installed in this Python; llama-server is built from the "
            "source of the installed version (run `make install` first)"
        ) from exc


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hearth" / "llama-server"


def binary_path(version: str | None = None) -> Path:
    return cache_root() / (version or installed_version()) / BINARY


def build_info(version: str | None = None) -> dict:
    """What build.json recorded for the cached binary ({} when there is none)."""
    try:
        return json.loads((binary_path(version).parent / "build.json").read_text())
    except (OSError, ValueError):
        return {}


def check_tools() -> dict[str, str]:
    """cmake and a C/C++ compiler, or a BuildError that names the packages to install."""
    found = {
        "cmake": shutil.which("cmake"),
        "c++": shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++"),
        "cc": shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc"),
    }
    missing = [name for name, path in found.items() if not path]
    if missing:
        raise BuildError(
            f"building llama-server needs {', '.join(missing)} (not found on PATH). "
            "Debian/Ubuntu: `sudo apt-get install cmake build-essential` "
            "(optional: ninja-build for a faster build); macOS: `xcode-select --install` and "
            "`brew install cmake`"
        )
    return found  # type: ignore[return-value]


def _run(cmd: list[str], log, cwd: Path | None = None) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    result = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise BuildError(f"`{' '.join(cmd[:4])} ...` failed (exit {result.returncode})")


def download_sdist(version: str, dest: Path, log) -> Path:
    """The llama-cpp-python sdist of `version`, through pip (its index and proxy settings)."""
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            "-d",
            str(dest),
            f"llama-cpp-python=={version}",
        ],
        log,
    )
    archives = sorted(dest.glob("llama_cpp_python-*.tar.gz")) + sorted(
        dest.glob("llama-cpp-python-*.tar.gz")
    )
    if not archives:
        raise BuildError(f"pip download left no llama-cpp-python sdist in {dest}")
    return archives[0]


def build(version: str | None = None, *, jobs: int | None = None, quiet: bool = False) -> Path:
    """Build llama-server for `version` (default: the installed one) into the cache."""
    version = version or installed_version()
    tools = check_tools()
    final = binary_path(version)
    final.parent.mkdir(parents=True, exist_ok=True)
    jobs = jobs or os.cpu_count() or 2
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".build-", dir=final.parent) as tmp:
        work = Path(tmp)
        log_path = final.parent / "build.log"
        if not quiet:
            print(f"building {BINARY} {version} in {work} (log: {log_path}) ...", file=sys.stderr)
        with log_path.open("w") as log:
            sdist = download_sdist(version, work, log)
            with tarfile.open(sdist) as tar:
                tar.extractall(work, filter="data")
            src = next(work.glob("*/vendor/llama.cpp"), None)
            if src is None or not (src / "CMakeLists.txt").exists():
                raise BuildError(f"{sdist.name} has no vendor/llama.cpp/CMakeLists.txt")
            build_dir = work / "build"
            generator = ["-G", "Ninja"] if shutil.which("ninja") else []
            _run(["cmake", "-S", str(src), "-B", str(build_dir), *generator, *CMAKE_FLAGS], log)
            _run(
                [
                    "cmake",
                    "--build",
                    str(build_dir),
                    "--target",
                    BINARY,
                    "--config",
                    "Release",
                    "-j",
                    str(jobs),
                ],
                log,
            )
            built = next((p for p in build_dir.rglob(BINARY) if p.is_file()), None)
            if built is None:
                raise BuildError(f"the build finished but left no {BINARY} under {build_dir}")
            version_out = subprocess.run(
                [str(built), "--version"], capture_output=True, text=True, timeout=60
            )
        seconds = time.perf_counter() - t0
        info = {
            "llama_cpp_python": version,
            "sdist": sdist.name,
            "llama_cpp_version": (version_out.stdout + version_out.stderr).strip(),
            "cmake_flags": CMAKE_FLAGS,
            "generator": "Ninja" if generator else "default",
            "jobs": jobs,
            "compiler": tools["c++"],
            "machine": platform.machine(),
            "build_seconds": round(seconds, 1),
            "built_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        staged = final.parent / f".{BINARY}.{os.getpid()}"
        shutil.copy2(built, staged)
        (final.parent / "build.json").write_text(json.dumps(info, indent=2) + "\n")
        staged.replace(final)  # atomic: the binary appears only once it is whole
    if not quiet:
        print(f"built {final} in {seconds:.0f} s", file=sys.stderr)
    return final


def ensure(version: str | None = None, *, rebuild: bool = False, jobs: int | None = None) -> Path:
    """The cached llama-server for the installed llama-cpp-python, built on first use."""
    path = binary_path(version)
    if path.is_file() and os.access(path, os.X_OK) and not rebuild:
        return path
    return build(version, jobs=jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=None, help="llama-cpp-python version (installed)")
    parser.add_argument("--rebuild", action="store_true", help="build even when cached")
    parser.add_argument("--jobs", type=int, default=None, help="parallel compile jobs (all cores)")
    args = parser.parse_args()
    try:
        path = ensure(args.version, rebuild=args.rebuild, jobs=args.jobs)
    except BuildError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(json.dumps({"path": str(path), **build_info(args.version)}, indent=2))


if __name__ == "__main__":
    main()
