"""Where a network's published weights are fetched from: one interface, a registry by name.

- "hub": the Hugging Face Hub (genet_jax.pretrained.hub), timm's safetensors; needs no torch.
- "pth": the authors' `.pth` files (their README's links) in torch hub's cache ($TORCH_HOME/hub/checkpoints),
  downloaded by torch.hub to a temporary file and renamed when complete; needs the torch extra.
"""
from __future__ import annotations

import os
from typing import Optional, Protocol

from genet_jax.errors import InputError
from genet_jax.optional import require
from genet_jax.pretrained import hub
from genet_jax.pretrained.catalog import HUB_WEIGHTS_FILE, PretrainedWeights


class WeightSource(Protocol):
    def fetch(self, entry: PretrainedWeights, revision: Optional[str],
              cache_dir: Optional[str]) -> tuple[str, Optional[str], str]:
        """(local path, sha256 or None, a description of where the weights came from)."""


class HubSource:
    def fetch(self, entry: PretrainedWeights, revision: Optional[str],
              cache_dir: Optional[str]) -> tuple[str, Optional[str], str]:
        revision = revision or entry.hub_revision
        path, sha256 = hub.hub_download(entry.hub_repo, HUB_WEIGHTS_FILE, revision, cache_dir, entry.hub_sha256)
        return path, sha256, f"{entry.hub_repo}@{revision} ({HUB_WEIGHTS_FILE})"


class AuthorsPthSource:
    def fetch(self, entry: PretrainedWeights, revision: Optional[str],
              cache_dir: Optional[str]) -> tuple[str, Optional[str], str]:
        if revision is not None:
            raise InputError("source='pth': the authors' files have no revisions; drop revision=")
        torch_hub = require("torch.hub", "loading the authors' .pth weights (source='pth')")
        directory = cache_dir or os.path.join(torch_hub.get_dir(), "checkpoints")
        path = os.path.join(directory, entry.authors_file)
        if not os.path.isfile(path):
            os.makedirs(directory, exist_ok=True)
            try:
                torch_hub.download_url_to_file(entry.authors_url, path, progress=True)
            except Exception as e:  # urllib's URLError / HTTPError, or an interrupted transfer
                first_line = (str(e).strip().splitlines() or [""])[0][:200]
                raise hub.HubUnavailableError(
                    f"{entry.authors_url} cannot be downloaded ({type(e).__name__}: {first_line}): fetch it where "
                    f"there is internet into {path}, or pass pretrained='path/to/{entry.authors_file}'") from None
        return path, hub.file_sha256(path), f"{entry.authors_url} ({path})"


SOURCES: dict[str, WeightSource] = {"hub": HubSource(), "pth": AuthorsPthSource()}


def fetch_published(entry: PretrainedWeights, source: str, revision: Optional[str],
                    cache_dir: Optional[str]) -> tuple[str, Optional[str], str]:
    if source not in SOURCES:
        raise InputError(f"source must be one of {sorted(SOURCES)}, got {source!r}")
    return SOURCES[source].fetch(entry, revision, cache_dir)
