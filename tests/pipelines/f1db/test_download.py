"""download_f1db against a real local HTTP server serving tarballs built in the test."""

from __future__ import annotations

import io
import re
import socket
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipelines.f1db.download import (
    DownloadError,
    archive_url,
    download_f1db,
    installed_tag,
    latest_tag,
)
from tests.pipelines.f1db.fake_github import (
    LATEST_PATH,
    FakeGitHub,
    Truncated,
    archive_path,
    as_fresh_clone,
    make_tarball,
    serve_fake_github,
)

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


@pytest.fixture
def server() -> Iterator[FakeGitHub]:
    with serve_fake_github() as fake:
        yield fake


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
    """With no previous data, a failure must not leave an empty or partial dest behind,
    nor the folders made to hold it; folders that were there stay, empty or not."""
    parent = tmp_path / "data"
    parent.mkdir()
    with pytest.raises(DownloadError):
        download_f1db("v2.0.0", parent / "f1db", server.repo_url, progress=False)
    assert list(parent.iterdir()) == []
    with pytest.raises(DownloadError):
        download_f1db("v2.0.0", parent / "new" / "deeper" / "f1db", server.repo_url)
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


# ------------------------------------------------------------- the latest release


def test_latest_tag_is_where_the_latest_release_redirects(server: FakeGitHub) -> None:
    server.release("v1.0.0", make_tarball(F1DB_TREE))
    assert latest_tag(server.repo_url, timeout=10) == "v1.0.0"
    assert server.requests == [LATEST_PATH]  # the release page itself is not fetched


def test_latest_tag_follows_a_renamed_repository(server: FakeGitHub) -> None:
    """A relative Location, and a hop through a renamed repository's own redirect."""
    server.routes[LATEST_PATH] = ("redirect", "/f1db/renamed/releases/latest")
    server.routes["/f1db/renamed/releases/latest"] = ("redirect", "../releases/tag/v2.0.0")
    assert latest_tag(server.repo_url) == "v2.0.0"
    assert server.requests == [LATEST_PATH, "/f1db/renamed/releases/latest"]


def _closed_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("route", "reason"),
    [
        pytest.param(None, r"answered HTTP 404 instead of redirecting", id="no-release"),
        pytest.param(
            ("redirect", "/f1db/f1db/releases"),
            r"/f1db/f1db/releases answered HTTP 404 instead of redirecting",
            id="redirect-to-nowhere",
        ),
        pytest.param(("redirect", LATEST_PATH), r"redirected 5 times", id="redirect-loop"),
        pytest.param(
            ("redirect", "/f1db/f1db/releases/tag/v1%3Fx=1"),
            r"releases/tag/v1%3Fx=1, not a usable tag",
            id="unusable-tag",
        ),
        pytest.param(("redirect", "dead-host"), r"Connection refused", id="redirect-to-dead-host"),
    ],
)
def test_latest_tag_failures_say_so_in_one_line(
    server: FakeGitHub, route: tuple[str, str] | None, reason: str
) -> None:
    if route == ("redirect", "dead-host"):
        route = ("redirect", f"http://127.0.0.1:{_closed_port()}/f1db/f1db/releases/latest")
    if route is not None:
        server.routes[LATEST_PATH] = route
    with pytest.raises(DownloadError) as excinfo:
        latest_tag(server.repo_url, timeout=5)
    message = str(excinfo.value)
    assert message.startswith(f"could not find the latest F1DB release at {server.repo_url}/")
    assert re.search(reason, message), message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("cut", "reason"),
    [
        pytest.param("connection", r"download of .*v1\.0\.0\.tar\.gz failed: ", id="body-cut"),
        pytest.param("archive", r"could not unpack the F1DB archive: ", id="archive-cut"),
    ],
)
def test_truncated_download_leaves_nothing(
    server: FakeGitHub, old_dest: Path, cut: str, reason: str
) -> None:
    """The connection drops mid-body (fewer bytes than Content-Length), or the server
    sends a gzip cut short: the old data stays, no temporary folder remains."""
    whole = make_tarball({**F1DB_TREE, "f1db-1.0.0/src/data/big.yml": "x: 1\n" * 20000})
    half = len(whole) // 2
    server.routes[ARCHIVE_PATH] = Truncated(whole, half) if cut == "connection" else whole[:half]
    before = snapshot(old_dest)
    with pytest.raises(DownloadError, match=reason) as excinfo:
        download_f1db("v1.0.0", old_dest, server.repo_url, progress=False, timeout=10)
    assert "\n" not in str(excinfo.value)
    assert snapshot(old_dest) == before
    assert_no_temp_dirs(old_dest.parent, {"f1db"})


def test_installed_tag_reads_source_txt(server: FakeGitHub, tmp_path: Path) -> None:
    server.routes[ARCHIVE_PATH] = make_tarball(F1DB_TREE)
    assert installed_tag(tmp_path / "f1db") is None
    dest = download_f1db("v1.0.0", tmp_path / "f1db", server.repo_url, progress=False)
    assert installed_tag(dest) == "v1.0.0"


# ------------------------------------------- `f1 data download` and `make serve`'s download


@pytest.fixture
def fresh_clone(
    server: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clear_settings: None
) -> Path:
    """No ../shared, no F1_DATA_DIR, F1DB fetched from ``server``; returns XDG_DATA_HOME."""
    return as_fresh_clone(monkeypatch, tmp_path, server.repo_url)


def _downloaded(home: Path) -> Path:
    return home / "f1-predictor" / "f1db"


def _left_in(home: Path) -> list[str]:
    """Everything a download left under the data home."""
    return sorted(p.relative_to(home).as_posix() for p in home.rglob("*"))


def test_cli_download_fetches_the_latest_release_by_default(
    server: FakeGitHub, fresh_clone: Path
) -> None:
    from typer.testing import CliRunner

    from pipelines.settings import resolve_data_dir
    from training.cli import app

    server.release("v1.0.0", make_tarball(F1DB_TREE))
    result = CliRunner().invoke(app, ["data", "download"])
    assert result.exit_code == 0, result.output
    assert server.requests == [LATEST_PATH, ARCHIVE_PATH]
    dest = _downloaded(fresh_clone)
    assert (dest / "seasons/2025/races/01-australia/race.yml").read_text() == RACE_YML
    assert "F1DB release: v1.0.0" in (dest / "SOURCE.txt").read_text()
    out = " ".join(result.output.split())
    assert "latest F1DB release: v1.0.0" in out
    assert "Data: F1DB (https://github.com/f1db/f1db), CC-BY-4.0" in out
    # found where the code looks, so no F1_DATA_DIR to set
    assert resolve_data_dir() == dest and "F1_DATA_DIR=" not in out


def test_cli_download_fetches_the_pinned_release(
    server: FakeGitHub, fresh_clone: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from training.cli import app

    server.release("v2.0.0", make_tarball({"f1db-2.0.0/src/data/seasons/2026/x.yml": "a: 1\n"}))
    server.release("v1.0.0", make_tarball(F1DB_TREE), latest=False)
    monkeypatch.setenv("F1_F1DB_TAG", "v1.0.0")
    result = CliRunner().invoke(app, ["data", "download"])
    assert result.exit_code == 0, result.output
    assert server.requests == [ARCHIVE_PATH]  # no look at the latest release
    dest = _downloaded(fresh_clone)
    assert "F1DB release: v1.0.0" in (dest / "SOURCE.txt").read_text()
    assert not (dest / "seasons/2026").exists()


def _break(server: FakeGitHub, monkeypatch: pytest.MonkeyPatch, how: str) -> str:
    """Make the download fail in one way; return a pattern of the reason it gives."""
    tarball = make_tarball(F1DB_TREE)
    if how == "bad-tag":  # a pinned tag with no release
        server.release("v1.0.0", tarball)
        monkeypatch.setenv("F1_F1DB_TAG", "v9.9.9")
        return r"release tag 'v9\.9\.9' not found at http://\S+/v9\.9\.9\.tar\.gz"
    if how == "truncated":
        server.release("v1.0.0", Truncated(tarball, len(tarball) // 2))
        return r"download of http://\S+/v1\.0\.0\.tar\.gz failed: peer closed connection"
    if how == "redirect-to-nowhere":
        server.routes[LATEST_PATH] = ("redirect", "/f1db/f1db/releases")
        return r"could not find the latest F1DB release at http://\S+: .* answered HTTP 404"
    assert how == "no-server"
    monkeypatch.setenv("F1_F1DB_REPO_URL", f"http://127.0.0.1:{_closed_port()}/f1db/f1db")
    return r"could not find the latest F1DB release at http://\S+: .*Connection refused"


@pytest.mark.parametrize("how", ["bad-tag", "truncated", "redirect-to-nowhere", "no-server"])
@pytest.mark.parametrize(
    ("command", "retry"),
    [
        pytest.param(["data", "download"], "pass a release with --tag <tag>", id="data-download"),
        pytest.param(
            ["train", "--if-missing"], "pin a release with F1_F1DB_TAG=<tag>", id="make-serve"
        ),
    ],
)
def test_cli_failed_download_says_what_to_do_in_one_line(
    server: FakeGitHub,
    fresh_clone: Path,
    empty_store: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    retry: str,
    how: str,
) -> None:
    """On an 80-column terminal: one error line naming the cause and both ways out, exit
    1, no traceback, nothing half-written and no model trained."""
    from typer.testing import CliRunner

    from pipelines.models.store import has_models
    from training import cli

    reason = _break(server, monkeypatch, how)
    monkeypatch.setattr(cli.err, "_width", 80)
    result = CliRunner().invoke(cli.app, command)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if "error:" in line]
    assert len(errors) == 1, result.output
    (line,) = errors
    assert re.match(r"error: " + reason, line), line
    assert "Set F1_DATA_DIR to an F1DB data folder, or " + retry in line
    assert line.endswith("/f1db/f1db/releases)")
    assert _left_in(fresh_clone) == []
    assert not has_models()


@pytest.fixture
def trained_on(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """`f1 train`'s training replaced by a stop that records the data folder it was given
    (these tests are about what is downloaded before; the tiny tree cannot be trained on)."""
    from pipelines.settings import resolve_data_dir
    from training import cli

    seen: list[Path] = []

    def stop(s: object) -> None:
        seen.append(resolve_data_dir())
        raise cli._fail("stopped before training")

    monkeypatch.setattr(cli, "_train", stop)
    return seen


def test_make_serve_replaces_the_downloaded_copy_when_another_release_is_pinned(
    server: FakeGitHub,
    fresh_clone: Path,
    empty_store: Path,
    trained_on: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from training.cli import app

    server.release("v1.0.0", make_tarball(F1DB_TREE))
    server.release("v2.0.0", make_tarball(F1DB_TREE), latest=False)
    first = CliRunner().invoke(app, ["train", "--if-missing"])
    dest = _downloaded(fresh_clone)
    assert "stopped before training" in first.output and trained_on == [dest]
    assert installed_tag(dest) == "v1.0.0"

    again = CliRunner().invoke(app, ["train", "--if-missing"])  # data found: no download
    assert server.requests == [LATEST_PATH, ARCHIVE_PATH] and "downloading" not in again.output

    monkeypatch.setenv("F1_F1DB_TAG", "v2.0.0")
    from pipelines.settings import get_settings

    get_settings.cache_clear()
    pinned = CliRunner().invoke(app, ["train", "--if-missing"])
    assert "the downloaded copy holds v1.0.0: replacing it" in " ".join(pinned.output.split())
    assert installed_tag(dest) == "v2.0.0" and trained_on == [dest, dest, dest]
    assert server.requests[-1] == archive_path("v2.0.0")
    assert _left_in(fresh_clone) != [] and not any(".download-" in p for p in _left_in(fresh_clone))


def test_make_serve_never_downloads_over_data_it_was_given(
    server: FakeGitHub,
    fresh_clone: Path,
    empty_store: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """F1_DATA_DIR set (even to an empty folder), or ../shared present with another release
    pinned: no request, the folder untouched."""
    from typer.testing import CliRunner

    from pipelines import settings
    from training.cli import app

    server.release("v1.0.0", make_tarball(F1DB_TREE))
    empty = tmp_path / "mine"
    empty.mkdir()
    monkeypatch.setenv("F1_DATA_DIR", str(empty))
    settings.get_settings.cache_clear()
    given = CliRunner().invoke(app, ["train", "--if-missing"])
    assert given.exit_code == 1 and "no F1DB data here" in " ".join(given.output.split())
    assert "f1 data download" in given.output and list(empty.iterdir()) == []

    shared = tmp_path / "shared" / "f1db"
    (shared / "seasons").mkdir(parents=True)
    monkeypatch.delenv("F1_DATA_DIR")
    monkeypatch.setenv("F1_F1DB_TAG", "v1.0.0")
    monkeypatch.setattr(settings, "SHARED_DATA_DIR", shared)
    settings.get_settings.cache_clear()
    team = CliRunner().invoke(app, ["train", "--if-missing"])
    assert f"F1_F1DB_TAG=v1.0.0 not used: training on the data in {shared}" in " ".join(
        team.output.split()
    )
    assert server.requests == [] and _left_in(fresh_clone) == []
