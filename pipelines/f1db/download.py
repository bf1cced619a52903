"""Fetch an F1DB release from GitHub into the data folder: its ``src/data/``, ``LICENSE``
and a ``SOURCE.txt`` naming the release and the CC-BY-4.0 credit, swapped in by renames."""

from __future__ import annotations

import re
import shutil
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import httpx
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

DEFAULT_REPO_URL = "https://github.com/f1db/f1db"
CREDIT = "Data: F1DB (https://github.com/f1db/f1db), CC-BY-4.0"

_TAG_RE = re.compile(r"[A-Za-z0-9._-]+")
_RELEASE_TAG_PATH = re.compile(r"/releases/tag/([^/]+)/?$")
_MAX_REDIRECTS = 5
_CHUNK = 64 * 1024


class DownloadError(RuntimeError):
    """A release could not be fetched or unpacked; ``dest`` was left unchanged."""


def archive_url(tag: str, repo_url: str) -> str:
    """GitHub's source archive of a release tag."""
    return f"{repo_url.rstrip('/')}/archive/refs/tags/{tag}.tar.gz"


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (or its type when it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def latest_tag(repo_url: str = DEFAULT_REPO_URL, *, timeout: float = 30.0) -> str:
    """The tag of the latest release: where ``<repo>/releases/latest`` redirects, following
    a few hops (a renamed repository)."""
    url = f"{repo_url.rstrip('/')}/releases/latest"
    what = f"could not find the latest F1DB release at {url}"
    hop = httpx.URL(url)
    try:
        with httpx.Client(follow_redirects=False, timeout=timeout) as client:
            for _ in range(_MAX_REDIRECTS):
                response = client.get(hop)
                if not response.is_redirect or response.next_request is None:
                    raise DownloadError(
                        f"{what}: {hop} answered HTTP {response.status_code} "
                        "instead of redirecting to a release"
                    )
                hop = response.next_request.url
                found = _RELEASE_TAG_PATH.search(hop.path)  # httpx.URL.path is decoded
                if found is not None:
                    if not _is_valid_tag(found.group(1)):
                        raise DownloadError(f"{what}: it redirected to {hop}, not a usable tag")
                    return found.group(1)
    except httpx.HTTPError as exc:
        raise DownloadError(f"{what}: {_one_line(exc)}") from exc
    raise DownloadError(f"{what}: redirected {_MAX_REDIRECTS} times, never to a release tag")


def installed_tag(folder: Path) -> str | None:
    """The release recorded in ``folder``'s SOURCE.txt by a previous download, if any."""
    try:
        text = (folder / "SOURCE.txt").read_text(encoding="utf-8")
    except OSError:
        return None
    found = re.search(r"^F1DB release: (.*)$", text, re.MULTILINE)
    return found.group(1).strip() if found else None


def _is_valid_tag(tag: str) -> bool:
    """Letters, digits, '.', '_' and '-' only: nothing that could alter the URL path."""
    return bool(tag) and _TAG_RE.fullmatch(tag) is not None and tag not in {".", ".."}


def _fetch(url: str, tag: str, target: Path, *, timeout: float, progress: bool) -> None:
    """Stream ``url`` to ``target`` so a large archive never has to fit in memory."""
    try:
        with (
            httpx.Client(follow_redirects=True, timeout=timeout) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code == 404:
                raise DownloadError(f"release tag {tag!r} not found at {url}")
            if response.is_error:
                raise DownloadError(
                    f"download of {url} failed: HTTP {response.status_code} "
                    f"{response.reason_phrase}".rstrip()
                )
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with (
                Progress(
                    TextColumn("[bold]F1DB {task.fields[tag]}"),
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    TimeRemainingColumn(),
                    disable=not progress,
                    transient=True,
                ) as bar,
                target.open("wb") as fh,
            ):
                task = bar.add_task("download", total=total, tag=tag)
                for chunk in response.iter_bytes(_CHUNK):
                    fh.write(chunk)
                    bar.update(task, advance=len(chunk))
    except httpx.HTTPError as exc:
        raise DownloadError(f"download of {url} failed: {_one_line(exc)}") from exc


def _check_member(member: tarfile.TarInfo, folder: Path) -> None:
    """Refuse a member that could land outside ``folder`` (tarfile's ``data`` filter), or
    with an absolute name (which that filter would quietly make relative)."""
    try:
        if PurePosixPath(member.name).is_absolute():
            raise tarfile.AbsolutePathError(member)
        tarfile.data_filter(member, str(folder))
    except tarfile.FilterError as exc:
        raise DownloadError(f"unsafe archive member {member.name!r}: {_one_line(exc)}") from exc


def _find_root(members: list[tarfile.TarInfo]) -> str:
    """The top-level folder holding ``src/data/seasons`` (GitHub names it ``<repo>-<version>``)."""
    roots = {
        PurePosixPath(m.name).parts[0]
        for m in members
        if PurePosixPath(m.name).parts[1:4] == ("src", "data", "seasons")
    }
    if len(roots) != 1:
        raise DownloadError(
            "the archive does not look like an F1DB source archive "
            "(expected one top-level folder containing src/data/seasons)"
        )
    return roots.pop()


def _unpack(archive: Path, workdir: Path) -> Path:
    """Extract the data tree and LICENSE; return the folder that will become ``dest``."""
    extract_dir = workdir / "extract"
    extract_dir.mkdir()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, extract_dir)
            root = _find_root(members)
            data_prefix = f"{root}/src/data/"
            license_name = f"{root}/LICENSE"
            wanted = [
                m
                for m in members
                if m.name.startswith(data_prefix) or (m.name == license_name and m.isfile())
            ]
            tar.extractall(extract_dir, members=wanted, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DownloadError(f"could not unpack the F1DB archive: {_one_line(exc)}") from exc

    data_dir = extract_dir / root / "src" / "data"
    if not (data_dir / "seasons").is_dir():
        raise DownloadError(
            "the archive does not look like an F1DB source archive (src/data/seasons is not a folder)"
        )
    license_file = extract_dir / root / "LICENSE"
    if license_file.is_file():
        shutil.copyfile(license_file, data_dir / "LICENSE")
    return data_dir


def _write_source(folder: Path, tag: str, url: str) -> None:
    """Record provenance and the CC-BY-4.0 credit next to the data it applies to."""
    when = datetime.now(UTC).isoformat(timespec="seconds")
    text = f"F1DB release: {tag}\nURL: {url}\nDownloaded (UTC): {when}\n{CREDIT}\n"
    (folder / "SOURCE.txt").write_text(text, encoding="utf-8")


def _swap_in(new: Path, dest: Path, aside: Path) -> None:
    """Replace ``dest`` by ``new`` with renames only, restoring the old ``dest`` on failure."""
    had_old = dest.exists() or dest.is_symlink()
    if had_old:
        dest.rename(aside)
    try:
        new.rename(dest)
    except OSError as exc:
        if had_old:
            try:
                aside.rename(dest)
            except OSError as restore_exc:
                raise DownloadError(
                    f"could not install the new data ({exc}) nor restore the old folder "
                    f"({restore_exc}); the previous data is at {aside}"
                ) from exc
        raise DownloadError(f"could not move the new data into {dest}: {exc}") from exc


def download_f1db(
    tag: str,
    dest: Path,
    repo_url: str = DEFAULT_REPO_URL,
    *,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download release ``tag`` of F1DB and atomically replace ``dest`` with its data tree
    (on any failure ``dest`` is left as it was)."""
    if not _is_valid_tag(tag):  # before any I/O
        raise DownloadError(
            f"invalid release tag {tag!r}: expected letters, digits, '.', '_' or '-' "
            "(e.g. 'v2025.24.0')"
        )
    dest = Path(dest)
    url = archive_url(tag, repo_url)
    # The folders this call creates, deepest first: removed again if it fails.
    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Next to dest, so the final renames stay on one filesystem (and are atomic).
        workdir = Path(tempfile.mkdtemp(prefix=f".{dest.name}.download-", dir=dest.parent))
    except OSError as exc:
        raise DownloadError(f"cannot write into {dest.parent}: {_one_line(exc)}") from exc
    keep_workdir = False
    ok = False
    try:
        archive = workdir / "archive.tar.gz"
        try:
            _fetch(url, tag, archive, timeout=timeout, progress=progress)
            new = _unpack(archive, workdir)
            _write_source(new, tag, url)
        except OSError as exc:  # disk full, permissions: the download itself went through
            raise DownloadError(f"could not write the F1DB data: {_one_line(exc)}") from exc
        try:
            _swap_in(new, dest, workdir / "previous")
        except DownloadError:
            # If even the restore failed, the old data lives in workdir: don't delete it.
            keep_workdir = (workdir / "previous").exists()
            raise
        ok = True
    finally:
        if not keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        if not ok:
            _remove_empty(created)
    return dest


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return
