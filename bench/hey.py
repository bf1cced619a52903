"""Running hey (the load generator, Debian package ``hey``) and parsing its summary.

hey's default summary is parsed rather than ``-o csv``: the CSV lists only requests
that got an HTTP response, so transport errors (refused, reset, timeout) would vanish
from it. Latencies in the summary have a resolution of 0.1 ms (``%4.4f secs``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PERCENTILES = (10, 25, 50, 75, 90, 95, 99)

_SUMMARY = {
    "total_s": re.compile(r"^\s*Total:\s+([0-9.]+|NaN) secs", re.M),
    "slowest_s": re.compile(r"^\s*Slowest:\s+([0-9.]+|NaN) secs", re.M),
    "fastest_s": re.compile(r"^\s*Fastest:\s+([0-9.]+|NaN) secs", re.M),
    "average_s": re.compile(r"^\s*Average:\s+([0-9.]+|NaN) secs", re.M),
    "rps": re.compile(r"^\s*Requests/sec:\s+([0-9.]+|NaN)", re.M),
}
_PCT = re.compile(r"^\s*(\d+)%\s+in\s+([0-9.]+)\s+secs", re.M)
_STATUS = re.compile(r"^\s*\[(\d{3})\]\s+(\d+)\s+responses", re.M)
_ERROR = re.compile(r"^\s*\[(\d+)\]\s+(.*\S)\s*$")


class HeyError(RuntimeError):
    """hey is missing, failed, or printed something that is not a summary."""


@dataclass
class HeyResult:
    """One hey run. Times in seconds; ``requests`` counts every attempt (HTTP or not)."""

    total_s: float
    rps: float
    """hey's own figure: every HTTP response (any status) per second."""
    average_s: float | None
    fastest_s: float | None
    slowest_s: float | None
    percentiles_s: dict[int, float] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    """Transport errors by message (connection refused, timeout ...), no HTTP status."""

    @property
    def responses(self) -> int:
        return sum(self.status.values())

    @property
    def ok(self) -> int:
        return sum(n for code, n in self.status.items() if code.startswith("2"))

    @property
    def failed(self) -> int:
        """Non-2xx responses plus transport errors."""
        return self.responses - self.ok + sum(self.errors.values())

    @property
    def requests(self) -> int:
        return self.responses + sum(self.errors.values())

    @property
    def ok_rps(self) -> float:
        return self.ok / self.total_s if self.total_s > 0 else 0.0

    def pct_ms(self, p: int) -> float | None:
        v = self.percentiles_s.get(p)
        return None if v is None else v * 1000.0

    def failures_by_kind(self) -> dict[str, int]:
        """Non-2xx statuses by code and transport errors (shortened), for the report."""
        out = {code: n for code, n in self.status.items() if not code.startswith("2")}
        for msg, n in self.errors.items():
            key = _short_error(msg)
            out[key] = out.get(key, 0) + n
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["percentiles_s"] = {str(k): v for k, v in self.percentiles_s.items()}
        d.update(
            responses=self.responses,
            ok=self.ok,
            failed=self.failed,
            requests=self.requests,
            ok_rps=self.ok_rps,
            failures_by_kind=self.failures_by_kind(),
        )
        return d


def _short_error(msg: str) -> str:
    low = msg.lower()
    for needle, name in (
        ("connection refused", "refused"),
        ("connection reset", "reset"),
        ("timeout", "timeout"),
        ("deadline exceeded", "timeout"),
        ("eof", "eof"),
        ("broken pipe", "broken-pipe"),
    ):
        if needle in low:
            return name
    return "error"


def _num(text: str) -> float | None:
    return None if text == "NaN" else float(text)


def parse_summary(text: str) -> HeyResult:
    """Parse hey's default summary output (hey 0.1.4)."""
    if "Summary:" not in text:
        raise HeyError(f"not a hey summary: {text[:300]!r}")
    vals: dict[str, float | None] = {}
    for key, rx in _SUMMARY.items():
        m = rx.search(text)
        vals[key] = _num(m.group(1)) if m else None
    if vals["total_s"] is None:
        raise HeyError("hey summary without a total time")
    # With few requests hey cannot fill the top percentiles and prints "0% in 0.0000 secs".
    pct = {int(p): float(v) for p, v in _PCT.findall(text) if int(p) in PERCENTILES}
    status_part, _, error_part = text.partition("Error distribution:")
    status_part = status_part.partition("Status code distribution:")[2]
    status: dict[str, int] = {}
    for code, n in _STATUS.findall(status_part):
        status[code] = status.get(code, 0) + int(n)
    errors: dict[str, int] = {}
    for line in error_part.splitlines():
        m = _ERROR.match(line)
        if m:
            errors[m.group(2)] = errors.get(m.group(2), 0) + int(m.group(1))
    return HeyResult(
        total_s=float(vals["total_s"] or 0.0),
        rps=float(vals["rps"] or 0.0),
        average_s=vals["average_s"],
        fastest_s=vals["fastest_s"],
        slowest_s=vals["slowest_s"],
        percentiles_s=pct,
        status=status,
        errors=errors,
    )


def hey_path() -> str:
    found = os.environ.get("HEY") or shutil.which("hey")
    if not found:
        raise HeyError("hey not found: `apt-get install hey` (make bench installs it)")
    return found


def hey_version() -> str:
    """The Debian package version (hey itself has no --version)."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "hey"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def hey_command(
    url: str, body_file: Path, concurrency: int, duration_s: float, timeout_s: int = 20
) -> list[str]:
    """A time-bounded POST load on ``url`` (loopback only)."""
    if not url.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise HeyError(f"refusing to load anything but loopback: {url}")
    return [
        hey_path(),
        "-z",
        f"{duration_s:g}s",
        "-c",
        str(concurrency),
        "-t",
        str(timeout_s),
        "-m",
        "POST",
        "-T",
        "application/json",
        "-D",
        str(body_file),
        url,
    ]


@dataclass
class HeyRun:
    result: HeyResult
    raw: str
    cpu_user_s: float
    cpu_sys_s: float
    wall_s: float
    command: list[str]

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_sys_s

    def cpu_to_dict(self) -> dict[str, float]:
        return {
            "user_s": self.cpu_user_s,
            "sys_s": self.cpu_sys_s,
            "wall_s": self.wall_s,
            "cores_used": self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0,
        }


def run_hey(command: list[str], max_wall_s: float) -> HeyRun:
    """Run hey, reap it with ``wait4`` to read its own CPU time, parse the summary."""
    t0 = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    try:
        out = read_bounded(proc, max_wall_s)
    except BaseException:
        proc.kill()  # Popen may reap it here (send_signal polls first): wait through Popen
        proc.wait()
        raise
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    text = out.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise HeyError(f"hey exited with {proc.returncode}: {text[-500:]}")
    return HeyRun(parse_summary(text), text, usage.ru_utime, usage.ru_stime, wall, command)


def read_bounded(proc: subprocess.Popen[bytes], max_wall_s: float) -> bytes:
    """Read all of stdout; kill hey if it outlives ``max_wall_s`` (it should not)."""
    import threading

    chunks: list[bytes] = []

    def reader() -> None:
        assert proc.stdout is not None
        for chunk in iter(lambda: proc.stdout.read(65536), b""):  # type: ignore[union-attr]
            chunks.append(chunk)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(max_wall_s)
    if t.is_alive():
        proc.kill()
        t.join(5)
        raise HeyError(f"hey still running after {max_wall_s:.0f} s: killed")
    return b"".join(chunks)
