"""Files from the Hugging Face Hub through `huggingface_hub.hf_hub_download` (its cache, HF_HOME,
HF_HUB_CACHE, HF_HUB_OFFLINE, HF_ENDPOINT and revisions all apply), each checked before use.

The check: the Hub names every file's blob in the cache by the hash it publishes for it (the ETag:
sha256 for an LFS file, git's blob sha1 otherwise), so the bytes on disk are hashed and compared with
that name, and with a pinned sha256 where the project has one. A file that fails is removed from the
cache (blob and snapshot link) before the error is raised: the next call downloads it afresh.
"""
from __future__ import annotations

import hashlib
import os
import re
from typing import Optional

from genet_jax.errors import InputError
from genet_jax.optional import require

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
GIT_SHA1_HEX = re.compile(r"^[0-9a-f]{40}$")
HASH_CHUNK_BYTES = 1 << 22
HUB_REPO_ID = re.compile(r"^(hf-hub:|hf_hub:)?[A-Za-z0-9][\w.-]*/[\w.-]+$")


class HubUnavailableError(InputError, OSError):
    """A Hub file that is neither in the cache nor reachable; the message says how to get it."""


class CorruptWeightsError(InputError, ValueError):
    """A weights file whose bytes or contents are not what they should be; names the file."""


def is_hub_id(text: str) -> bool:
    """`owner/name` or `hf-hub:owner/name` (and not an existing local path)."""
    return bool(HUB_REPO_ID.match(text)) and not os.path.exists(text)


def strip_hub_prefix(repo: str) -> str:
    return repo.split(":", 1)[1] if repo.startswith(("hf-hub:", "hf_hub:")) else repo


def _hex_digest(path: str, digest) -> str:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str) -> str:
    return _hex_digest(path, hashlib.sha256())


def git_blob_sha1(path: str) -> str:
    """git's object id of a file's bytes: sha1 of "blob <size>\\0" + the bytes."""
    return _hex_digest(path, hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode()))


def _remove_from_cache(snapshot_path: str, blob_path: str) -> None:
    for path in (snapshot_path, blob_path):
        if os.path.lexists(path):
            os.remove(path)


def verify_cached_file(snapshot_path: str, pinned_sha256: Optional[str] = None) -> str:
    """Check a file hf_hub_download returned against the hash its blob is named by (and `pinned_sha256`);
    returns the sha256 of its bytes. On a mismatch the file leaves the cache and CorruptWeightsError is raised."""
    blob_path = os.path.realpath(snapshot_path)
    published = os.path.basename(blob_path)
    actual = file_sha256(blob_path)
    problem = None
    if SHA256_HEX.match(published) and actual != published:
        problem = f"its sha256 is {actual}, the Hub published {published}"
    elif GIT_SHA1_HEX.match(published) and git_blob_sha1(blob_path) != published:
        problem = f"its git blob hash differs from the Hub's {published}"
    elif pinned_sha256 and actual != pinned_sha256:
        problem = f"its sha256 is {actual}, genet_jax pins {pinned_sha256}"
    if problem:
        _remove_from_cache(snapshot_path, blob_path)
        raise CorruptWeightsError(f"{snapshot_path}: corrupt download ({problem}); removed it from the cache, "
                                  "run again to download it afresh")
    return actual


def hub_download(repo: str, filename: str, revision: Optional[str] = None, cache_dir: Optional[str] = None,
                 pinned_sha256: Optional[str] = None) -> tuple[str, str]:
    """(local path, sha256) of `filename` in Hub repository `repo` at `revision`, downloaded or cached
    and verified."""
    hub = require("huggingface_hub", "loading pretrained weights from the Hugging Face Hub")
    errors = require("huggingface_hub.errors", "loading pretrained weights from the Hugging Face Hub")
    repo = strip_hub_prefix(repo)
    where = f"{repo}/{filename}" + (f"@{revision}" if revision else "")
    try:
        path = hub.hf_hub_download(repo, filename, revision=revision, cache_dir=cache_dir)
    except errors.LocalEntryNotFoundError as e:  # offline, or the Hub could not be reached, and not cached
        cache = cache_dir or hub.constants.HF_HUB_CACHE
        reason = "HF_HUB_OFFLINE is set" if hub.constants.HF_HUB_OFFLINE else "the Hub cannot be reached"
        raise HubUnavailableError(
            f"{where} is not in the Hugging Face cache ({cache}) and {reason} ({type(e).__name__}): pre-fetch it "
            f"where there is internet with `hf download {repo} {filename}` and copy that HF_HOME here, or pass "
            "pretrained='path/to/model.safetensors'") from None
    except errors.RepositoryNotFoundError:
        raise HubUnavailableError(f"{repo}: no such repository on the Hub "
                                  f"({hub.constants.ENDPOINT}), or it is private") from None
    except errors.RevisionNotFoundError:
        raise HubUnavailableError(f"{repo}: the Hub has no revision {revision!r}") from None
    except errors.EntryNotFoundError:
        raise HubUnavailableError(f"{repo}: the Hub repository has no file {filename!r}") from None
    except (errors.HfHubHTTPError, OSError) as e:
        first_line = (str(e).strip().splitlines() or [""])[0][:200]
        raise HubUnavailableError(f"{where}: download failed ({type(e).__name__}: {first_line})") from None
    return path, verify_cached_file(path, pinned_sha256)
