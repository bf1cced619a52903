"""A local stand-in for GitHub's F1DB repository: a real HTTP server on 127.0.0.1 that
answers the latest-release redirect and serves source archives built in the tests."""

from __future__ import annotations

import contextlib
import io
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO_PATH = "/f1db/f1db"
LATEST_PATH = f"{REPO_PATH}/releases/latest"


def archive_path(tag: str) -> str:
    """Where the server expects a release's source archive, as GitHub lays it out."""
    return f"{REPO_PATH}/archive/refs/tags/{tag}.tar.gz"


def release_path(tag: str) -> str:
    """A release's page, where ``LATEST_PATH`` redirects."""
    return f"{REPO_PATH}/releases/tag/{tag}"


def make_tarball(
    files: dict[str, str], *, symlinks: dict[str, str] | None = None, with_dirs: bool = True
) -> bytes:
    """A gzip tarball holding ``files`` (name -> text) and optional ``symlinks`` (name -> target)."""
    symlinks = symlinks or {}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        if with_dirs:  # GitHub archives list the folders too.
            dirs = sorted(
                {"/".join(n.split("/")[:i]) for n in files for i in range(1, n.count("/") + 1)}
            )
            for d in dirs:
                if ".." in d.split("/") or d.startswith("/") or d in symlinks:
                    continue
                info = tarfile.TarInfo(d)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
        # Links first, so a later file can try to write through one.
        for name, target in symlinks.items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tree_tarball(data_dir: Path, top: str) -> bytes:
    """An F1DB source archive of a data tree on disk: ``top/src/data/...`` plus a LICENSE."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(data_dir, arcname=f"{top}/src/data")
        licence = b"Creative Commons Attribution 4.0 International\n"
        info = tarfile.TarInfo(f"{top}/LICENSE")
        info.size = len(licence)
        tar.addfile(info, io.BytesIO(licence))
    return buf.getvalue()


@dataclass(frozen=True)
class Truncated:
    """A body cut short: ``Content-Length`` announces more than is sent, then the
    connection closes (a download interrupted mid-way)."""

    body: bytes
    sent: int


Route = bytes | tuple[str, str] | Truncated
"""Body bytes; ("redirect", location); (reason, status code) for an error; or Truncated."""


@dataclass
class FakeGitHub:
    """Routes (path -> Route) served by a real HTTP server; ``requests`` lists the paths asked."""

    port: int
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    @property
    def repo_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{REPO_PATH}"

    def release(self, tag: str, archive: Route, *, latest: bool = True) -> None:
        """Publish ``archive`` as release ``tag`` (and as the latest release)."""
        self.routes[archive_path(tag)] = archive
        if latest:
            self.routes[LATEST_PATH] = ("redirect", self.repo_url + release_path(tag))


@contextlib.contextmanager
def serve_fake_github() -> Iterator[FakeGitHub]:
    """A FakeGitHub listening on a free port for the duration of the block."""
    state = FakeGitHub(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            route = state.routes.get(self.path)
            if route is None:
                self.send_error(404, "Not Found")
                return
            if isinstance(route, tuple):
                kind, value = route
                if kind == "redirect":
                    self.send_response(302)
                    self.send_header("Location", value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.send_error(int(value), kind)
                return
            body, length = (
                (route.body[: route.sent], len(route.body))
                if isinstance(route, Truncated)
                else (route, len(route))
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/x-gzip")
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def as_fresh_clone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, repo_url: str) -> Path:
    """The settings of a clone with no ../shared and no F1_DATA_DIR (use with the
    ``clear_settings`` fixture), downloading from ``repo_url`` into a per-user data folder
    under ``tmp_path``; returns that data home (``XDG_DATA_HOME``)."""
    from pipelines import settings

    home = tmp_path / "xdg-data"
    monkeypatch.setattr(settings, "SHARED_DATA_DIR", tmp_path / "no-shared" / "f1db")
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    monkeypatch.setenv("F1_F1DB_REPO_URL", repo_url)
    monkeypatch.setenv("F1_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("F1_REPORTS_DIR", str(tmp_path / "reports"))
    settings.get_settings.cache_clear()
    return home
