"""An in-memory stand-in for the Hugging Face Hub's HTTP API, plugged into ``huggingface_hub`` at its network
boundary (``set_client_factory`` with a mock transport), so the library's own upload and download code runs
unchanged: repo creation, preupload, commits, repo info, tree listing and file downloads.

Only the endpoints ``HfApi.create_repo``, ``upload_folder`` / ``create_commit`` (regular, non-LFS uploads, deletions) and
``snapshot_download`` call are answered; anything else is a 404 and is recorded in ``requests`` like the rest.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass, field

import huggingface_hub
from huggingface_hub.utils import _http

try:  # huggingface_hub >= 1.0 talks through httpx (this environment ships it as httpx2)
    import httpx2 as httpx
except ImportError:  # pragma: no cover - depends on the installed huggingface_hub
    import httpx


@dataclass
class FakeRepo:
    """One model repo: its commits (each a dict path -> bytes) and the private flag it was created with."""

    private: bool
    commits: list[dict[str, bytes]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def files(self) -> dict[str, bytes]:
        return self.commits[-1] if self.commits else {}

    def sha(self, i: int = -1) -> str:
        return hashlib.sha1(json.dumps(sorted(self.commits[i]) if self.commits else []).encode()
                            + str(len(self.commits)).encode()).hexdigest()


@dataclass
class FakeHub:
    """The Hub's state and a log of every request (method, path)."""

    repos: dict[str, FakeRepo] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append((request.method, path))
        if request.method == "POST" and path == "/api/repos/create":
            body = json.loads(request.content)
            repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
            if repo_id in self.repos:
                return httpx.Response(409, json={"error": "You already created this model repo",
                                                 "url": f"https://huggingface.co/{repo_id}"})
            self.repos[repo_id] = FakeRepo(private=bool(body.get("private")))
            return httpx.Response(200, json={"url": f"https://huggingface.co/{repo_id}", "name": repo_id})
        if request.method == "POST" and path == "/api/validate-yaml":
            return httpx.Response(200, json={})
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/([^/]+)", path):
            files = json.loads(request.content)["files"]
            return httpx.Response(200, json={"files": [{"path": f["path"], "uploadMode": "regular",
                                                        "shouldIgnore": False} for f in files]})
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/([^/]+)", path):
            return self._commit(m.group(1), request)
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)", path):
            repo = self.repos.get(m.group(1))
            if repo is None or not repo.commits:
                return httpx.Response(404, headers={"X-Error-Code": "RepoNotFound"}, json={"error": "not found"})
            return httpx.Response(200, json={"id": m.group(1), "sha": repo.sha(), "private": repo.private,
                                             "siblings": [{"rfilename": p} for p in repo.files]})
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path):
            repo = self.repos[m.group(1)]
            return httpx.Response(200, json=[{"type": "file", "path": p, "size": len(b),
                                              "oid": hashlib.sha1(b"blob %d\0" % len(b) + b).hexdigest()}
                                             for p, b in repo.files.items()])
        if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            repo = self.repos[m.group(1)]
            content = repo.files[m.group(3)]
            etag = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
            headers = {"X-Repo-Commit": repo.sha(), "ETag": f'"{etag}"', "Content-Length": str(len(content))}
            return httpx.Response(200, headers=headers, content=b"" if request.method == "HEAD" else content)
        return httpx.Response(404, json={"error": f"the fake Hub does not serve {request.method} {path}"})

    def _commit(self, repo_id: str, request: httpx.Request) -> httpx.Response:
        raw = request.content
        if request.headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        files, summary = dict(self.repos[repo_id].files), ""
        for line in raw.decode().splitlines():
            item = json.loads(line)
            if item["key"] == "header":
                summary = item["value"]["summary"]
            elif item["key"] == "file":
                files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] == "deletedFile":
                files.pop(item["value"]["path"], None)
            else:
                return httpx.Response(400, json={"error": f"the fake Hub takes regular files only, got {item['key']}"})
        repo = self.repos[repo_id]
        repo.commits.append(files)
        repo.messages.append(summary)
        return httpx.Response(200, json={"commitUrl": f"https://huggingface.co/{repo_id}/commit/{repo.sha()}",
                                         "commitOid": repo.sha(), "success": True})

    def commit_posts(self) -> list[str]:
        return [p for m, p in self.requests if m == "POST" and "/commit/" in p]


@contextmanager
def fake_hub(hub: FakeHub | None = None):
    """Route every ``huggingface_hub`` request of this process to ``hub`` while the block runs."""
    hub = hub or FakeHub()
    previous = _http._GLOBAL_CLIENT_FACTORY
    huggingface_hub.set_client_factory(lambda: httpx.Client(transport=httpx.MockTransport(hub.handle),
                                                            follow_redirects=True))
    try:
        yield hub
    finally:
        huggingface_hub.set_client_factory(previous)


@contextmanager
def no_network():
    """Every ``huggingface_hub`` request fails as with no network."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no network in this test", request=request)

    previous = _http._GLOBAL_CLIENT_FACTORY
    huggingface_hub.set_client_factory(lambda: httpx.Client(transport=httpx.MockTransport(refuse)))
    try:
        yield
    finally:
        huggingface_hub.set_client_factory(previous)
