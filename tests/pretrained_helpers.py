"""Pretrained weights for the tests, made here (these machines cannot reach the Hub): a GENet's
variables in timm's layout as safetensors bytes, a Hugging Face cache laid out the way huggingface_hub
lays it out, and a local HTTP endpoint that answers what `hf_hub_download` asks (HF_ENDPOINT)."""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import safetensors.numpy

from genet_jax.interop.state_dict import to_state_dict

COMMIT = "0123456789abcdef0123456789abcdef01234567"  # a made-up commit id of the made-up repositories


def safetensors_bytes(spec, variables, path) -> bytes:
    tensors = {k: np.array(v, order="C") for k, v in to_state_dict(spec, variables, "timm").items()}
    safetensors.numpy.save_file(tensors, str(path), metadata={"format": "pt"})
    return path.read_bytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def lay_out_hub_cache(hf_home, repo: str, files: dict[str, bytes], commit: str = COMMIT) -> str:
    """HF_HOME/hub/models--OWNER--NAME/{blobs/<hash>, refs/main, snapshots/<commit>/<file> -> blob}."""
    repo_dir = os.path.join(hf_home, "hub", "models--" + repo.replace("/", "--"))
    os.makedirs(os.path.join(repo_dir, "blobs"), exist_ok=True)
    os.makedirs(os.path.join(repo_dir, "refs"), exist_ok=True)
    snapshot = os.path.join(repo_dir, "snapshots", commit)
    os.makedirs(snapshot, exist_ok=True)
    with open(os.path.join(repo_dir, "refs", "main"), "w") as f:
        f.write(commit)
    for name, data in files.items():
        with open(os.path.join(repo_dir, "blobs", sha256(data)), "wb") as f:
            f.write(data)
        os.symlink(os.path.join("..", "..", "blobs", sha256(data)), os.path.join(snapshot, name))
    return repo_dir


def cache_files(hf_home) -> list[str]:
    """Every file and link under HF_HOME/hub, relative to it, but huggingface_hub's lock files."""
    root = os.path.join(hf_home, "hub")
    found = (os.path.relpath(os.path.join(d, f), root) for d, _, names in os.walk(root) for f in names)
    return sorted(path for path in found if not path.startswith(".locks" + os.sep))


class _HubHandler(http.server.BaseHTTPRequestHandler):
    """/{owner}/{name}/resolve/{revision}/{file}: the Hub's headers (X-Repo-Commit, the ETag as the
    LFS sha256 in X-Linked-Etag, X-Linked-Size) and the file's bytes, or a 404 naming the missing entry."""

    repos: dict[str, dict[str, bytes]] = {}
    published: dict[str, str] = {}  # "repo/file" -> the sha256 announced, when it should lie about the bytes

    def _resolve(self) -> tuple[int, bytes, dict]:
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return 404, b"", {"X-Error-Code": "RepoNotFound"}
        repo, name = "/".join(parts[:2]), "/".join(parts[4:])
        if repo not in self.repos:
            return 404, b"", {"X-Error-Code": "RepoNotFound"}
        if name not in self.repos[repo]:
            return 404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}
        data = self.repos[repo][name]
        etag = self.published.get(f"{repo}/{name}", sha256(data))
        return 200, data, {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"', "X-Linked-Etag": f'"{etag}"',
                           "X-Linked-Size": str(len(data)), "Content-Type": "application/octet-stream"}

    def _answer(self, with_body: bool) -> None:
        status, data, headers = self._resolve()
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if with_body:
            self.wfile.write(data)

    def do_HEAD(self):  # noqa: N802 (http.server's naming)
        self._answer(with_body=False)

    def do_GET(self):  # noqa: N802
        self._answer(with_body=True)

    def log_message(self, *args):
        pass


@contextmanager
def hub_endpoint(repos: dict[str, dict[str, bytes]], published: dict[str, str] | None = None) -> Iterator[str]:
    """A local Hub serving `repos` ({repo: {file: bytes}}); yields its URL for HF_ENDPOINT."""
    handler = type("Handler", (_HubHandler,), {"repos": repos, "published": published or {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def hub_environment(hf_home, endpoint: str | None = None, offline: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(hf_home), HF_HUB_DISABLE_TELEMETRY="1")
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


LOGITS_SCRIPT = """
import json, sys
import numpy as np
import genet_jax
name, pretrained, inputs, out = sys.argv[1:5]
loaded = genet_jax.load_pretrained(name or None, pretrained=True if pretrained == "True" else pretrained)
np.save(out, np.asarray(loaded.model.apply(loaded.variables, np.load(inputs))))
print(json.dumps({"source": loaded.source, "sha256": loaded.sha256, "classes": len(loaded.class_names or ())}))
"""


def config_bytes(config: dict) -> bytes:
    return json.dumps(config).encode()
