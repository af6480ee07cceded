"""The reference embedding backend: sentence-transformers `encode` on CPU with torch.

Slowest, but it is the model's own code path; the other backends are measured against it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hearth.index.embed_base import BaseEmbedder, no_load_progress_bars, set_torch_threads


class TorchEmbedder(BaseEmbedder):
    backend = "torch"

    def _load(self) -> None:
        set_torch_threads()
        from sentence_transformers import SentenceTransformer

        with no_load_progress_bars():
            self._st: Any = SentenceTransformer(
                str(self.model.path), device="cpu", local_files_only=True
            )

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._st.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
