"""download_f1db against a real local HTTP server serving tarballs built in the test."""

from __future__ import annotations

import io
import re
import socket
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipelines.f1db.download import DownloadError, archive_url, download_f1db

ARCHIVE_PATH = "/f1db/f1db/archive/refs/tags/v1.0.0.tar.gz"
RACE_YML = "round: 1\ncircuitId: melbourne\nofficialName: Australian Grand Prix\n"
DRIVER_YML = "id: max-verstappen\nname: Max Verstappen\n"
LICENSE_TEXT = "Creative Commons Attribution 4.0 International\n"

F1DB_TREE: dict[str, str] = {
    "f1db-1.0.0/src/data/seasons/2025/races/01-australia/race.yml": RACE_YML,
    "f1db-1.0.0/src/data/drivers/max-verstappen.yml": DRIVER_YML,
    "f1db-1.0.0/LICENSE": LICENSE_TEXT,
    "f1db-1.0.0/README.md": "not part of the data tree\n",
}


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


@dataclass
class FakeGitHub:
    """Routes (path -> body bytes, or ('redirect', location)) served by a real HTTP server."""

    port: int
    routes: dict[str, bytes | tuple[str, str]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    @property
    def repo_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/f1db/f1db"


@pytest.fixture
def server() -> Iterator[FakeGitHub]:
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
            self.send_response(200)
            self.send_header("Content-Type", "application/x-gzip")
            self.send_header("Content-Length", str(len(route)))
            self.end_headers()
            self.wfile.write(route)

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


@pytest.fixture
def old_dest(tmp_path: Path) -> Path:
    """An existing data folder that a failed download must leave byte-for-byte intact."""
    dest = tmp_path / "data" / "f1db"
    (dest / "seasons" / "2024").mkdir(parents=True)
    (dest / "seasons" / "2024" / "old.yml").write_text("old: true\n")
    (dest / "SOURCE.txt").write_text("F1DB release: v0.9.0\n")
    return dest


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its content (None for folders)."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def assert_no_temp_dirs(parent: Path, expected: set[str]) -> None:
    assert {p.name for p in parent.iterdir()} == expected


def test_archive_url() -> None:
    assert (
        archive_url("v2025.24.0", "https://github.com/f1db/f1db")
        == "https://github.com/f1db/f1db/archive/refs/tags/v2025.24.0.tar.gz"
    )


def test_success_extracts_data_tree_license_and_source(server: FakeGitHub, tmp_path: Path) -> None:
    server.routes[ARCHIVE_PATH] = make_tarball(F1DB_TREE)
    dest = tmp_path / "data" / "f1db"
    before = datetime.now(UTC).replace(microsecond=0)

    result = download_f1db("v1.0.0", dest, server.repo_url, progress=True, timeout=10)

    assert result == dest
    assert server.requests == [ARCHIVE_PATH]
    assert (dest / "seasons/2025/races/01-australia/race.yml").read_text() == RACE_YML
    assert (dest / "drivers/max-verstappen.yml").read_text() == DRIVER_YML
    assert (dest / "LICENSE").read_text() == LICENSE_TEXT
    # Only src/data (+ LICENSE, SOURCE.txt) lands in dest, not the rest of the repository.
    assert sorted(p.name for p in dest.iterdir()) == ["LICENSE", "SOURCE.txt", "drivers", "seasons"]
    assert not (dest / "README.md").exists()

    source = (dest / "SOURCE.txt").read_text()
    lines = source.splitlines()
    assert "F1DB release: v1.0.0" in lines
    assert f"URL: {server.repo_url}/archive/refs/tags/v1.0.0.tar.gz" in lines
    assert "Data: F1DB (https://github.com/f1db/f1db), CC-BY-4.0" in lines
    stamp = next(line for line in lines if line.startswith("Downloaded (UTC): "))
    when = datetime.fromisoformat(stamp.removeprefix("Downloaded (UTC): "))
    assert when.utcoffset() == timedelta(0)
    assert before <= when <= datetime.now(UTC)
    assert_no_temp_dirs(dest.parent, {"f1db"})


def test_without_license_still_succeeds(server: FakeGitHub, tmp_path: Path) -> None:
    tree = {k: v for k, v in F1DB_TREE.items() if not k.endswith("LICENSE")}
    server.routes[ARCHIVE_PATH] = make_tarball(tree)
    dest = download_f1db("v1.0.0", tmp_path / "f1db", server.repo_url, progress=False)
    assert not (dest / "LICENSE").exists()
    assert (dest / "drivers/max-verstappen.yml").read_text() == DRIVER_YML


def test_follows_redirects(server: FakeGitHub, tmp_path: Path) -> None:
    """github.com redirects archive URLs to codeload.github.com."""
    server.routes[ARCHIVE_PATH] = ("redirect", "/codeload/f1db-1.0.0.tar.gz")
    server.routes["/codeload/f1db-1.0.0.tar.gz"] = make_tarball(F1DB_TREE)
    dest = download_f1db("v1.0.0", tmp_path / "f1db", server.repo_url, progress=False)
    assert server.requests == [ARCHIVE_PATH, "/codeload/f1db-1.0.0.tar.gz"]
    assert (dest / "seasons/2025/races/01-australia/race.yml").read_text() == RACE_YML


def test_replaces_existing_dest(server: FakeGitHub, tmp_path: Path, old_dest: Path) -> None:
    server.routes[ARCHIVE_PATH] = make_tarball(F1DB_TREE)
    (old_dest.parent / "sibling.txt").write_text("keep me\n")

    download_f1db("v1.0.0", old_dest, server.repo_url, progress=False)

    assert not (old_dest / "seasons" / "2024").exists()
    assert (old_dest / "seasons/2025/races/01-australia/race.yml").read_text() == RACE_YML
    assert "F1DB release: v1.0.0" in (old_dest / "SOURCE.txt").read_text()
    assert "v0.9.0" not in (old_dest / "SOURCE.txt").read_text()
    # Siblings survive, and neither the old tree nor the temp folder is left behind.
    assert (old_dest.parent / "sibling.txt").read_text() == "keep me\n"
    assert_no_temp_dirs(old_dest.parent, {"f1db", "sibling.txt"})


def test_unknown_tag_404(server: FakeGitHub, old_dest: Path) -> None:
    server.routes[ARCHIVE_PATH] = make_tarball(F1DB_TREE)
    before = snapshot(old_dest)

    with pytest.raises(DownloadError) as excinfo:
        download_f1db("v9.9.9", old_dest, server.repo_url, progress=False)

    message = str(excinfo.value)
    assert "'v9.9.9'" in message and "not found" in message
    assert f"{server.repo_url}/archive/refs/tags/v9.9.9.tar.gz" in message
    assert snapshot(old_dest) == before
    assert_no_temp_dirs(old_dest.parent, {"f1db"})


def test_server_error_names_url_and_status(server: FakeGitHub, old_dest: Path) -> None:
    server.routes[ARCHIVE_PATH] = ("Internal Server Error", "500")
    before = snapshot(old_dest)
    with pytest.raises(DownloadError, match=r"archive/refs/tags/v1\.0\.0\.tar\.gz.*500"):
        download_f1db("v1.0.0", old_dest, server.repo_url, progress=False)
    assert snapshot(old_dest) == before
    assert_no_temp_dirs(old_dest.parent, {"f1db"})


def test_connection_refused(old_dest: Path) -> None:
    with socket.socket() as sock:  # grab a free port, then close it so nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    before = snapshot(old_dest)
    repo_url = f"http://127.0.0.1:{port}/f1db/f1db"
    with pytest.raises(DownloadError, match=re.escape(f"127.0.0.1:{port}/f1db/f1db/archive")):
        download_f1db("v1.0.0", old_dest, repo_url, progress=False, timeout=5)
    assert snapshot(old_dest) == before
    assert_no_temp_dirs(old_dest.parent, {"f1db"})


def test_archive_without_src_data(server: FakeGitHub, old_dest: Path) -> None:
    server.routes[ARCHIVE_PATH] = make_tarball(
        {"f1db-1.0.0/README.md": "hello\n", "f1db-1.0.0/LICENSE": LICENSE_TEXT}
    )
    before = snapshot(old_dest)
    with pytest.raises(DownloadError, match="does not look like an F1DB source archive"):
        download_f1db("v1.0.0", old_dest, server.repo_url, progress=False)
    assert snapshot(old_dest) == before
    assert_no_temp_dirs(old_dest.parent, {"f1db"})


def test_not_a_tarball(server: FakeGitHub, old_dest: Path) -> None:
    server.routes[ARCHIVE_PATH] = b"<html>this is not a tarball</html>"
    before = snapshot(old_dest)
    with pytest.raises(DownloadError, match="could not unpack"):
        download_f1db("v1.0.0", old_dest, server.repo_url, progress=False)
    assert snapshot(old_dest) == before
    assert_no_temp_dirs(old_dest.parent, {"f1db"})


# The extraction folder is <tmp_path>/data/.f1db.download-*/extract, so these escapes would land
# in <tmp_path>/data, <tmp_path> or above if they were extracted: all places the test inspects.
@pytest.mark.parametrize(
    ("files", "symlinks"),
    [
        pytest.param({"../evil": "pwned\n"}, {}, id="dotdot-top"),
        pytest.param({"../../../evil": "pwned\n"}, {}, id="dotdot-to-tmp_path"),
        pytest.param(
            {"f1db-1.0.0/src/data/../../../../../../evil": "pwned\n"}, {}, id="dotdot-nested"
        ),
        pytest.param(
            {"f1db-1.0.0/src/data/escape/evil": "pwned\n"},
            {"f1db-1.0.0/src/data/escape": "../../../../.."},
            id="write-through-symlink",
        ),
        pytest.param({}, {"f1db-1.0.0/src/data/evil": "../../../../../../evil"}, id="symlink-out"),
        pytest.param({}, {"f1db-1.0.0/src/data/evil": "/etc/passwd"}, id="symlink-absolute"),
    ],
)
def test_rejects_unsafe_members(
    server: FakeGitHub,
    tmp_path: Path,
    old_dest: Path,
    files: dict[str, str],
    symlinks: dict[str, str],
) -> None:
    server.routes[ARCHIVE_PATH] = make_tarball({**F1DB_TREE, **files}, symlinks=symlinks)
    before = snapshot(old_dest)
    outside_before = snapshot(tmp_path)

    with pytest.raises(DownloadError, match="unsafe archive member"):
        download_f1db("v1.0.0", old_dest, server.repo_url, progress=False)

    assert snapshot(old_dest) == before
    assert snapshot(tmp_path) == outside_before
    assert not (tmp_path.parent / "evil").exists()
    assert list(tmp_path.rglob("evil")) == []
    assert_no_temp_dirs(old_dest.parent, {"f1db"})


def test_rejects_absolute_member(server: FakeGitHub, tmp_path: Path, old_dest: Path) -> None:
    target = tmp_path / "abs-evil"
    buf = io.BytesIO(make_tarball(F1DB_TREE))
    # Append an absolute-path member by rebuilding with tarfile directly (add() would strip "/").
    with tarfile.open(fileobj=buf, mode="r:gz") as src:
        members = [(m, src.extractfile(m)) for m in src.getmembers()]
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            for m, fh in members:
                tar.addfile(m, fh)
            info = tarfile.TarInfo(str(target))
            info.size = 6
            tar.addfile(info, io.BytesIO(b"pwned\n"))
    server.routes[ARCHIVE_PATH] = out.getvalue()
    before = snapshot(old_dest)

    with pytest.raises(DownloadError, match=r"unsafe archive member.*absolute"):
        download_f1db("v1.0.0", old_dest, server.repo_url, progress=False)

    assert not target.exists()
    assert snapshot(old_dest) == before
    assert_no_temp_dirs(old_dest.parent, {"f1db"})


@pytest.mark.parametrize(
    "tag", ["", "../v1.0.0", "v1/0", "v1.0.0?x=1", "v1 0", "..", "v1.0.0\n", "ünï"]
)
def test_invalid_tag_rejected_before_any_request(
    server: FakeGitHub, old_dest: Path, tag: str
) -> None:
    before = snapshot(old_dest)
    with pytest.raises(DownloadError, match="invalid release tag") as excinfo:
        download_f1db(tag, old_dest, server.repo_url, progress=False)
    assert repr(tag) in str(excinfo.value)
    assert server.requests == []
    assert snapshot(old_dest) == before
    assert_no_temp_dirs(old_dest.parent, {"f1db"})


def test_fresh_dest_absent_after_failure(server: FakeGitHub, tmp_path: Path) -> None:
    """With no previous data, a failure must not leave an empty or partial dest behind."""
    parent = tmp_path / "data"
    parent.mkdir()
    with pytest.raises(DownloadError):
        download_f1db("v2.0.0", parent / "f1db", server.repo_url, progress=False)
    assert list(parent.iterdir()) == []


def test_cli_data_download_through_the_runner(
    server: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`f1 data download --tag` with the repository URL from settings (F1_F1DB_REPO_URL)."""
    from typer.testing import CliRunner

    from pipelines.settings import get_settings
    from training.cli import app

    server.routes[ARCHIVE_PATH] = make_tarball(F1DB_TREE)
    monkeypatch.setenv("F1_F1DB_REPO_URL", server.repo_url)
    get_settings.cache_clear()
    dest = tmp_path / "f1db"
    try:
        ok = CliRunner().invoke(app, ["data", "download", "--tag", "v1.0.0", "--dest", str(dest)])
        missing = CliRunner().invoke(
            app, ["data", "download", "--tag", "v9.9.9", "--dest", str(dest)]
        )
    finally:
        get_settings.cache_clear()
    assert ok.exit_code == 0, ok.output
    assert (dest / "seasons/2025/races/01-australia/race.yml").read_text() == RACE_YML
    assert missing.exit_code == 1
    assert "v9.9.9" in missing.output and "Traceback" not in missing.output
    assert (dest / "drivers/max-verstappen.yml").exists()  # the failed run left it intact
