"""The container image: the Dockerfile BentoML generates from bentofile.yaml, and the image itself.

bentofile.yaml names a Dockerfile template (deploy/docker/Dockerfile.template) that extends
BentoML's own template with writable volumes, a HEALTHCHECK on /readyz and a numeric non-root
USER. The image must: run as a non-root user (numerically, for Kubernetes' runAsNonRoot), carry a
HEALTHCHECK that probes /readyz without curl, install libgomp1 (LightGBM), EXPOSE 3000, start
`bentoml serve`, set OMP_NUM_THREADS=1, and declare as VOLUMEs the folders the recipes mount
(/tmp, BENTOML_HOME), the latter made by the bentoml user: a platform without Kubernetes' fsGroup
(ECS on Fargate) copies the image's owner into an empty volume, else mounts it root-owned 0755.

* The Dockerfile is checked offline (no Docker engine): rendered from the bentofile's docker
  options (fast), and, against a trained store, from a built Bento exactly as
  `bentoml containerize` renders it (`bentoml.container.get_containerfile`, slow).
* The rules are a function returning problems, and every rule is shown to fire on a broken copy.
* The health check command is run against a stub server (200 -> healthy, 503/refused -> not).
* The image itself is built and run only where a Docker engine and the base image are available
  (`-m container`); it skips otherwise, before any expensive work.

BentoML 1.4.40 quirks this relies on (checked below, so an upgrade shows when they change):
* `docker.dockerfile_template` is supported only by "v1" Bentos: `bentoml build` falls back to v1
  (python_debian.j2; docker.env becomes ENV lines, which a v2 Bento would drop).
* `bentoml containerize` of such a Bento fails with "Accessing file outside of current working
  directory is not allowed" unless run from a directory that contains the temporary build context
  (bentoml/BentoML#5566); run it from the temp dir: `cd /tmp && bentoml containerize ...`.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.session import STORE_HOME

ROOT = Path(__file__).resolve().parents[2]
BENTOFILE = ROOT / "bentofile.yaml"
TEMPLATE = ROOT / "deploy" / "docker" / "Dockerfile.template"
DEPLOYMENT = ROOT / "deploy" / "k8s" / "deployment.yaml"
ECS_TASK = ROOT / "deploy" / "ecs" / "task-definition.json"

BASE_IMAGE = "python:3.11-slim"
PORT = 3000
HEALTH_URL = f"http://127.0.0.1:{PORT}/readyz"
BENTOML_BIN = str(Path(sys.executable).parent / "bentoml")
KNOWN_EVENT = {"event": {"season": 2025, "round": 8}}


# ----------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, USER, ...
    args: str  # the rest, with line continuations joined
    line: int  # first line, 1-based


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile: comments and blank lines dropped, continuations joined."""
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # also inside a continuation, as Docker does
        if not buf:
            start = n
        if line.endswith("\\"):
            buf.append(line[:-1])
            continue
        buf.append(line)
        keyword, _, args = " ".join(buf).strip().partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        buf = []
    if buf:
        keyword, _, args = " ".join(buf).strip().partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
    return out


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    starts = [i for i, ins in enumerate(instructions) if ins.keyword == "FROM"]
    return instructions[starts[-1] :] if starts else instructions


def _expand(value: str, scope: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: scope.get(m.group(1) or m.group(2), ""), value)


def image_env(instructions: list[Instruction]) -> dict[str, str]:
    """The ENV of the final stage, with ARG defaults and $VAR references resolved."""
    args: dict[str, str] = {}
    env: dict[str, str] = {}
    for ins in final_stage(instructions):
        if ins.keyword == "ARG":
            name, sep, default = ins.args.partition("=")
            value = _expand(" ".join(shlex.split(default)), {**args, **env}) if sep else ""
            args.setdefault(name.strip(), value)
        elif ins.keyword == "ENV":
            tokens = shlex.split(ins.args)
            if tokens and "=" not in tokens[0]:  # legacy form: ENV KEY value with spaces
                pairs = [(tokens[0], " ".join(tokens[1:]))]
            else:
                pairs = [tuple(t.split("=", 1)) for t in tokens]  # type: ignore[misc]
            for key, value in pairs:
                env[key] = _expand(value, {**args, **env})
    return env


def declared_volumes(instructions: list[Instruction]) -> list[str]:
    """The paths of the final stage's VOLUME instructions (JSON or plain form)."""
    paths: list[str] = []
    for ins in final_stage(instructions):
        if ins.keyword == "VOLUME":
            argv = exec_form(ins.args)
            paths += argv if argv is not None else ins.args.split()
    return paths


def made_for_user(instructions: list[Instruction], path: str, uid: int) -> bool:
    """Does a RUN of the final stage create ``path`` owned by ``uid``: made while that user is
    the USER, or chown'ed / `install -o`'ed to it?"""
    owner = rf"(?:{uid}|bentoml)"
    user = "root"
    for ins in final_stage(instructions):
        if ins.keyword == "USER":
            user = ins.args.split(":")[0].strip()
        elif ins.keyword == "RUN" and path in ins.args.split():
            if re.search(r"\bmkdir\b", ins.args) and re.fullmatch(owner, user):
                return True
            if re.search(rf"\b(chown|install)\b.*(\s|-o\s*){owner}(:{owner})?\s", ins.args):
                return True
    return False


def is_under(path: str, folder: str) -> bool:
    return path.rstrip("/") == folder.rstrip("/") or path.startswith(folder.rstrip("/") + "/")


def mounted_paths() -> list[str]:
    """Where the Kubernetes pod mounts writable volumes (the ECS task mounts the same)."""
    dep = next(d for d in yaml.safe_load_all(DEPLOYMENT.read_text(encoding="utf-8")) if d)
    containers = dep["spec"]["template"]["spec"]["containers"]
    return [m["mountPath"] for c in containers for m in c.get("volumeMounts", [])]


def exec_form(args: str) -> list[str] | None:
    """The argv of an exec-form ENTRYPOINT/CMD ("[...]"), or None for the shell form."""
    try:
        argv = json.loads(args)
    except json.JSONDecodeError:
        return None
    return [str(a) for a in argv] if isinstance(argv, list) else None


def command_argv(args: str) -> list[str]:
    argv = exec_form(args)
    return argv if argv is not None else ["/bin/sh", "-c", args]


@dataclass(frozen=True)
class HealthCheck:
    options: dict[str, str]
    argv: list[str]


def parse_healthcheck(args: str) -> HealthCheck | None:
    """HEALTHCHECK [--opt=value ...] CMD <command>; None for HEALTHCHECK NONE."""
    if args.strip().upper() == "NONE":
        return None
    m = re.match(r"^((?:--[\w-]+=\S+\s+)*)CMD\s+(.*)$", args.strip(), re.DOTALL)
    if m is None:
        raise ValueError(f"cannot parse HEALTHCHECK {args!r}")
    options = dict(o.lstrip("-").split("=", 1) for o in m.group(1).split())
    return HealthCheck(options, command_argv(m.group(2)))


def python_code(argv: list[str]) -> str | None:
    """The program of `python -c <code>` (any python executable), else None."""
    if len(argv) >= 3 and Path(argv[0]).name.startswith("python") and argv[1] == "-c":
        return argv[2]
    return None


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration):
        total += float(number) * units[unit]
    return total


# ----------------------------------------------------------------------------- rules


def bentoml_constants() -> tuple[int, str]:
    """The bentoml user's UID and the bento path in BentoML's generated images."""
    from bentoml._internal.container.generate import BENTO_PATH, BENTO_UID_GID

    return BENTO_UID_GID, BENTO_PATH


def bentoml_entrypoint_script() -> str:
    """The entrypoint.sh that BentoML copies into every bento (env/docker/entrypoint.sh)."""
    import bentoml._internal.container.frontend.dockerfile as frontend

    return (Path(frontend.__file__).parent / "entrypoint.sh").read_text(encoding="utf-8")


def dockerfile_problems(text: str, entrypoint_script: str) -> list[str]:
    """What is wrong with a generated Dockerfile, as readable sentences ([] = nothing)."""
    uid, bento_path = bentoml_constants()
    problems: list[str] = []
    ins = final_stage(parse_dockerfile(text))

    def last(keyword: str) -> Instruction | None:
        found = [i for i in ins if i.keyword == keyword]
        return found[-1] if found else None

    # --- non-root user, by number
    user = last("USER")
    if user is None:
        problems.append("no USER instruction: the container runs as root")
    else:
        name = user.args.split(":")[0].strip()
        if name in ("root", "0"):
            problems.append(f"final USER is root ({user.args!r}, line {user.line})")
        elif not name.isdigit():
            problems.append(
                f"final USER {user.args!r} is a name: Kubernetes runAsNonRoot cannot verify it "
                f"without runAsUser; use the numeric UID {uid}"
            )
        elif int(name) != uid:
            problems.append(
                f"final USER UID {name} is not the bentoml user's UID {uid} (owner of the bento)"
            )

    # --- health check on /readyz, without curl
    hc_ins = last("HEALTHCHECK")
    if hc_ins is None:
        problems.append("no HEALTHCHECK instruction")
    else:
        hc = parse_healthcheck(hc_ins.args)
        if hc is None:
            problems.append("HEALTHCHECK NONE disables the health check")
        else:
            joined = " ".join(hc.argv)
            if re.search(r"\b(curl|wget)\b", joined):
                problems.append(
                    f"HEALTHCHECK needs curl/wget ({joined!r}): {BASE_IMAGE} has neither; "
                    "use python's urllib"
                )
            code = python_code(hc.argv)
            if code is None:
                problems.append(f"HEALTHCHECK is not `python -c ...`: {hc.argv}")
            else:
                if "/readyz" not in code:
                    problems.append(f"HEALTHCHECK does not probe /readyz: {code!r}")
                if f"'{PORT}'" not in code and f":{PORT}/" not in code:
                    problems.append(f"HEALTHCHECK does not default to port {PORT}: {code!r}")
                m = re.search(r"timeout\s*=\s*(\d+(?:\.\d+)?)", code)
                limit = seconds(hc.options.get("timeout", "30s"))
                if m is None or float(m.group(1)) >= limit:
                    problems.append(
                        f"HEALTHCHECK request timeout must be below --timeout ({limit:g} s)"
                    )
            for option in ("interval", "timeout", "start-period", "retries"):
                if option not in hc.options:
                    problems.append(f"HEALTHCHECK sets no --{option}")
            if seconds(hc.options.get("start-period", "0s")) < 30:
                problems.append("HEALTHCHECK --start-period is below 30 s (start-up takes 6-15 s)")

    # --- libgomp1
    if not any(
        i.keyword == "RUN" and re.search(r"apt-get\s+install\b.*\blibgomp1\b", i.args) for i in ins
    ):
        problems.append("libgomp1 is not apt-get installed (LightGBM needs libgomp.so.1)")

    # --- EXPOSE 3000
    exposed = {p.split("/")[0] for i in ins if i.keyword == "EXPOSE" for p in i.args.split()}
    if str(PORT) not in exposed:
        problems.append(f"port {PORT} is not EXPOSEd (EXPOSE: {sorted(exposed)})")

    # --- starts `bentoml serve`
    ep, cmd = last("ENTRYPOINT"), last("CMD")
    argv = (command_argv(ep.args) if ep else []) + (command_argv(cmd.args) if cmd else [])
    script = f"{bento_path}/env/docker/entrypoint.sh"
    joined = " ".join(argv)
    if re.search(r"\bbentoml serve\b", joined):
        pass
    elif argv[:1] == [script] and (len(argv) == 1 or argv[1].startswith("-") or argv[1] == "serve"):
        # BentoML's entrypoint.sh: no arguments (or flags first) -> `bentoml serve "$@" $BENTO_PATH`
        if not re.search(r'bentoml serve "\$@" "\$BENTO_PATH"', entrypoint_script):
            problems.append(f"{script} does not run `bentoml serve` when started without arguments")
    else:
        problems.append(f"the image does not start `bentoml serve`: ENTRYPOINT+CMD = {argv}")

    # --- OMP_NUM_THREADS=1
    env = image_env(ins)
    if env.get("OMP_NUM_THREADS") != "1":
        problems.append(f"OMP_NUM_THREADS is {env.get('OMP_NUM_THREADS')!r} in the image, not '1'")

    # --- writable folders of a read-only root: declared volumes, owned by the bentoml user
    volumes = declared_volumes(ins)
    for path in mounted_paths():
        if path not in volumes:
            problems.append(
                f"{path} is not a VOLUME: ECS mounts it root-owned 0755 (VOLUME: {volumes})"
            )
        elif path != "/tmp" and not made_for_user(ins, path, uid):
            problems.append(f"{path} is not created owned by the bentoml user (UID {uid})")
    home = env.get("BENTOML_HOME", "")
    if not any(is_under(home, v) for v in volumes):
        problems.append(f"BENTOML_HOME {home!r} is not on a VOLUME (BentoML writes there)")
    return problems


# ----------------------------------------------------------------------------- rendering


def render_from_bentofile() -> str:
    """The Dockerfile for bentofile.yaml's docker options, rendered as `bentoml containerize`
    renders it (BuildKit syntax, header), without building a Bento or a model store."""
    from bentoml._internal.bento.build_config import BentoBuildConfig
    from bentoml._internal.container.generate import generate_containerfile

    with BENTOFILE.open(encoding="utf-8") as f:
        config = BentoBuildConfig.from_yaml(f).with_defaults()
    with tempfile.TemporaryDirectory() as bento_fs, contextlib.chdir(ROOT):
        return generate_containerfile(
            config.docker,
            str(ROOT),
            conda=config.conda,
            bento_fs=Path(bento_fs),
            enable_buildkit=True,
            add_header=True,
        )


@pytest.fixture(scope="module")
def rendered() -> str:
    return render_from_bentofile()


def render_containerfile(
    tag: str, out: Path, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """`bentoml.container.get_containerfile`: the Dockerfile `bentoml containerize` would build
    (same code path: copies the bento and its models into a temporary build context)."""
    code = "import sys, bentoml; bentoml.container.get_containerfile(sys.argv[1], output_path=sys.argv[2])"
    return subprocess.run(
        [sys.executable, "-c", code, tag, str(out)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def containerize_cwd() -> Path:
    """Where `bentoml containerize` must run for a Bento with a dockerfile_template: a directory
    containing its temporary build context (bentoml/BentoML#5566)."""
    return Path(tempfile.gettempdir()).resolve()


# ----------------------------------------------------------------------------- fast tests


def test_bentofile_uses_the_template() -> None:
    docker = yaml.safe_load(BENTOFILE.read_text(encoding="utf-8"))["docker"]
    assert (ROOT / docker["dockerfile_template"]).resolve() == TEMPLATE.resolve()
    text = TEMPLATE.read_text(encoding="utf-8")
    assert text.lstrip().startswith("{% extends bento_base_template %}")
    # The block is extended, not replaced: BentoML's EXPOSE/ENTRYPOINT/USER stay in place.
    assert re.search(r"{% block SETUP_BENTO_ENTRYPOINT %}\s*{{ super\(\) }}", text)


def test_rendered_dockerfile_has_no_problems(rendered: str) -> None:
    assert dockerfile_problems(rendered, bentoml_entrypoint_script()) == []


def test_rendered_dockerfile_facts(rendered: str) -> None:
    """What the image is, as built (also what docs/deployment.md states)."""
    uid, bento_path = bentoml_constants()
    ins = final_stage(parse_dockerfile(rendered))
    assert [i.args.split()[0] for i in ins if i.keyword == "FROM"] == [BASE_IMAGE]
    assert [i.args for i in ins if i.keyword == "USER"][-1] == f"{uid}:{uid}"
    hc = parse_healthcheck([i for i in ins if i.keyword == "HEALTHCHECK"][-1].args)
    assert hc is not None
    assert hc.options == {"interval": "30s", "timeout": "5s", "start-period": "60s", "retries": "3"}
    assert hc.argv[:2] == ["python", "-c"]
    assert [exec_form(i.args) for i in ins if i.keyword == "ENTRYPOINT"] == [
        [f"{bento_path}/env/docker/entrypoint.sh"]
    ]
    assert not [i for i in ins if i.keyword == "CMD"]
    env = image_env(ins)
    assert env["OMP_NUM_THREADS"] == "1" and env["BENTOML_DO_NOT_TRACK"] == "true"
    assert env["PATH"].startswith("/app/.venv/bin:")  # the healthcheck's `python`
    assert declared_volumes(ins) == ["/tmp", "/home/bentoml/runtime"]
    assert env["BENTOML_HOME"] == "/home/bentoml/runtime"
    assert made_for_user(ins, "/home/bentoml/runtime", uid)


def test_docs_show_the_end_of_the_rendered_dockerfile(rendered: str) -> None:
    """docs/deployment.md quotes the last instructions of the image: they are the real ones."""
    doc = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    block = re.search(r"```dockerfile\n(.*?)```", doc, re.DOTALL)
    assert block, "docs/deployment.md quotes no Dockerfile"
    shown = [(i.keyword, i.args) for i in parse_dockerfile(block.group(1))]
    real = [(i.keyword, i.args) for i in parse_dockerfile(rendered)]
    assert len(shown) >= 5 and shown == real[-len(shown) :]


def test_ecs_task_mounts_the_image_volumes(rendered: str) -> None:
    """Every task volume lands on a VOLUME of the image (else Fargate mounts it as root)."""
    task = json.loads(ECS_TASK.read_text(encoding="utf-8"))
    mounts = [m["containerPath"] for c in task["containerDefinitions"] for m in c["mountPoints"]]
    assert mounts and set(mounts) <= set(declared_volumes(parse_dockerfile(rendered)))
    assert sorted(mounts) == sorted(mounted_paths())


def test_image_user_matches_the_kubernetes_manifest(rendered: str) -> None:
    dep = next(d for d in yaml.safe_load_all(DEPLOYMENT.read_text(encoding="utf-8")) if d)
    run_as = dep["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    user = [i.args for i in parse_dockerfile(rendered) if i.keyword == "USER"][-1]
    assert user.split(":")[0] == str(run_as)


# Deliberately broken copies: every rule must fire.


def _sub(pattern: str, repl: str) -> Callable[[str], str]:
    def mutate(text: str) -> str:
        new = re.sub(pattern, repl, text, flags=re.MULTILINE)
        assert new != text, f"mutation {pattern!r} changed nothing"
        return new

    return mutate


def _append(line: str) -> Callable[[str], str]:
    return lambda text: text + "\n" + line + "\n"


_HC = r"^HEALTHCHECK .*\\\n\s+CMD \[.*\]$"
_CURL_HC = (
    "HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 "
    "CMD curl -fsS http://127.0.0.1:3000/readyz || exit 1"
)

BREAKAGES: list[tuple[str, Callable[[str], str], str]] = [
    ("no-healthcheck", _sub(_HC, ""), "no HEALTHCHECK"),
    ("healthcheck-none", _append("HEALTHCHECK NONE"), "HEALTHCHECK NONE"),
    ("healthcheck-curl", _sub(_HC, _CURL_HC), "curl"),
    ("healthcheck-livez", _sub(r"/readyz(?=', timeout)", "/livez"), "does not probe /readyz"),
    ("healthcheck-port", _sub(r"or '3000'", "or '8080'"), f"port {PORT}"),
    ("healthcheck-slow-request", _sub(r"timeout=4\)", "timeout=10)"), "below --timeout"),
    ("healthcheck-no-start-period", _sub(r" --start-period=60s", ""), "--start-period"),
    ("user-by-name", _sub(r"^USER 1034:1034$", "USER bentoml"), "is a name"),
    ("user-root", _sub(r"^USER 1034:1034$", "USER root"), "root"),
    ("user-uid-0", _sub(r"^USER 1034:1034$", "USER 0:0"), "root"),
    ("user-other-uid", _sub(r"^USER 1034:1034$", "USER 2000"), "not the bentoml user"),
    ("no-user", _sub(r"^USER .*$", ""), "no USER"),
    ("no-libgomp1", _sub(r" libgomp1\b", ""), "libgomp1"),
    ("no-expose-3000", _sub(r"^EXPOSE 3000$", ""), "not EXPOSEd"),
    (
        "other-entrypoint",
        _sub(r"^ENTRYPOINT .*$", 'ENTRYPOINT ["python", "-m", "http.server"]'),
        "bentoml serve",
    ),
    ("cmd-overrides-serve", _append('CMD ["bash"]'), "bentoml serve"),
    ("omp-4", _sub(r"^ARG OMP_NUM_THREADS=1$", "ARG OMP_NUM_THREADS=4"), "OMP_NUM_THREADS"),
    ("omp-unset", _sub(r"^(ARG|ENV) OMP_NUM_THREADS=.*$", ""), "OMP_NUM_THREADS"),
    ("no-volumes", _sub(r"^VOLUME .*$", ""), "/tmp is not a VOLUME"),
    ("tmp-not-a-volume", _sub(r'^VOLUME \["/tmp", ', "VOLUME ["), "/tmp is not a VOLUME"),
    ("runtime-not-made", _sub(r"^RUN mkdir -m 0755 /home/bentoml/runtime$", ""), "not created"),
    (
        "runtime-made-by-root",
        _sub(r"^(RUN mkdir -m 0755 /home/bentoml/runtime)$", r"USER root\n\1\nUSER 1034"),
        "not created owned by the bentoml user",
    ),
    ("home-off-volume", _sub(r"^ENV BENTOML_HOME=/home/bentoml/runtime$", ""), "BENTOML_HOME"),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [b[1:] for b in BREAKAGES], ids=[b[0] for b in BREAKAGES]
)
def test_rules_catch_a_broken_dockerfile(
    rendered: str, mutate: Callable[[str], str], expected: str
) -> None:
    problems = dockerfile_problems(mutate(rendered), bentoml_entrypoint_script())
    assert any(expected in p for p in problems), problems


def test_rules_catch_an_entrypoint_script_that_does_not_serve(rendered: str) -> None:
    script = bentoml_entrypoint_script().replace('bentoml serve "$@"', 'python -m http.server "$@"')
    problems = dockerfile_problems(rendered, script)
    assert any("does not run `bentoml serve`" in p for p in problems), problems


def test_parser_joins_continuations_and_skips_comments() -> None:
    text = 'FROM x AS b\n# c\nRUN a \\\n  # inner comment\n\n  b\nENV A=1 B="two words"\nUSER 7\n'
    ins = parse_dockerfile(text)
    assert [(i.keyword, i.line) for i in ins] == [("FROM", 1), ("RUN", 3), ("ENV", 7), ("USER", 8)]
    assert ins[1].args.split() == ["a", "b"]
    assert image_env(ins) == {"A": "1", "B": "two words"}


# ----------------------------------------------------------------------------- health check


class _Stub(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def stub_server(status: int) -> Iterator[int]:
    handler = type("Handler", (_Stub,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def healthcheck_code(rendered: str) -> str:
    hc = parse_healthcheck(
        [i for i in parse_dockerfile(rendered) if i.keyword == "HEALTHCHECK"][-1].args
    )
    assert hc is not None
    code = python_code(hc.argv)
    assert code is not None
    return code


def run_check(code: str, **env: str) -> int:
    clean = {k: v for k, v in os.environ.items() if k not in ("PORT", "BENTOML_PORT")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=clean | env, capture_output=True, timeout=30
    )
    return done.returncode


@pytest.mark.parametrize("variable", ["PORT", "BENTOML_PORT"])
def test_healthcheck_command_follows_readyz(rendered: str, variable: str) -> None:
    """Exit 0 on 200 from /readyz; 1 on 503 (models loading) and on a refused connection. The
    port comes from $PORT / $BENTOML_PORT when set (BentoML serves there then)."""
    code = healthcheck_code(rendered)
    with stub_server(200) as port:
        assert run_check(code, **{variable: str(port)}) == 0
    with stub_server(503) as port:
        assert run_check(code, **{variable: str(port)}) == 1
    assert run_check(code, **{variable: str(port)}) == 1  # the stub is gone: refused


def test_healthcheck_defaults_to_port_3000(rendered: str, monkeypatch: pytest.MonkeyPatch) -> None:
    code = healthcheck_code(rendered)
    seen: list[str] = []

    class _Response:
        status = 200

    def fake_urlopen(url: str, timeout: float) -> _Response:
        seen.append(url)
        return _Response()

    monkeypatch.delenv("PORT", raising=False)
    monkeypatch.delenv("BENTOML_PORT", raising=False)
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    with pytest.raises(SystemExit) as exit_:
        exec(code, {})
    assert exit_.value.code == 0
    assert seen == [HEALTH_URL]


# ----------------------------------------------------------------------------- built Bento


def build_bento(env: dict[str, str]) -> str:
    out = subprocess.run([BENTOML_BIN, "build", "--output", "tag"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1].split()[-1].removeprefix("__tag__:")


@pytest.fixture(scope="module")
def store_env(pinned_env: dict[str, str]) -> dict[str, str]:
    return os.environ | pinned_env | {"BENTOML_HOME": str(STORE_HOME)}


@pytest.fixture(scope="module")
def built_bento(store_env: dict[str, str]) -> str:
    """`bentoml build` against the session's trained store (pinned model tags)."""
    return build_bento(store_env)


@pytest.mark.slow
def test_built_bento_renders_the_expected_dockerfile(
    built_bento: str, store_env: dict[str, str], pinned_env: dict[str, str], tmp_path: Path
) -> None:
    name, version = built_bento.split(":")
    bento = STORE_HOME / "bentos" / name / version
    info = yaml.safe_load((bento / "bento.yaml").read_text(encoding="utf-8"))
    # a v1 Bento carrying the template (BentoML re-renders it at containerize time)
    assert info["docker"]["dockerfile_template"], "the Bento lost the dockerfile_template"
    shipped = (bento / "env" / "docker" / "Dockerfile.template").read_text(encoding="utf-8")
    assert shipped == TEMPLATE.read_text(encoding="utf-8")
    recorded = {m["tag"] for s in info["services"] for m in s["models"]}
    assert set(pinned_env.values()) <= recorded  # containerize packs these into the image
    script = (bento / "env" / "docker" / "entrypoint.sh").read_text(encoding="utf-8")

    # the minimal Dockerfile written by `bentoml build`
    built = (bento / "env" / "docker" / "Dockerfile").read_text(encoding="utf-8")
    assert dockerfile_problems(built, script) == []

    # the one `bentoml containerize` builds, rendered offline from the Bento (no Docker engine)
    out = tmp_path / "Dockerfile"
    started = time.monotonic()
    done = render_containerfile(built_bento, out, store_env, containerize_cwd())
    assert done.returncode == 0, done.stderr[-3000:]
    final = out.read_text(encoding="utf-8")
    assert dockerfile_problems(final, script) == []
    assert final.startswith("# 1.2.1 is the current docker frontend")  # BuildKit form
    assert time.monotonic() - started < 120


@pytest.mark.slow
def test_containerize_from_the_project_root_hits_bentoml_5566(
    built_bento: str, store_env: dict[str, str], tmp_path: Path
) -> None:
    """Why containerize must run from the temp dir. When this fails, BentoML has fixed #5566:
    the `cd` before `bentoml containerize` (Makefile, docs) can go."""
    done = render_containerfile(built_bento, tmp_path / "Dockerfile", store_env, ROOT)
    assert done.returncode != 0
    assert "Accessing file outside of current working directory" in done.stderr


# ----------------------------------------------------------------------------- the image


def _first_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[0] if lines else f"exit {done.returncode}"


def docker_unavailable() -> str | None:
    """Why the image cannot be built and run here, or None. Cheap: runs before any build."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=30)  # fmt: skip
        if info.returncode != 0:
            return f"no Docker engine: `docker info` failed: {_first_line(info)}"
        image = subprocess.run(["docker", "image", "inspect", BASE_IMAGE],
                               capture_output=True, text=True, timeout=30)  # fmt: skip
        if image.returncode != 0:
            pull = subprocess.run(["docker", "pull", BASE_IMAGE],
                                  capture_output=True, text=True, timeout=120)  # fmt: skip
            if pull.returncode != 0:
                return f"base image {BASE_IMAGE} is not present and cannot be pulled: {_first_line(pull)}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker is not usable: {exc}"
    return None


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.container
@pytest.mark.timeout(2400)
def test_image_serves_and_becomes_healthy(request: pytest.FixtureRequest) -> None:
    """`bentoml containerize`, `docker run` as the platforms run it (read-only root, UID 1034,
    the image's own volumes), /readyz, /predict_full, health status, volume owners."""
    reason = docker_unavailable()
    if reason is not None:
        pytest.skip(reason)
    from tests.service.servers import free_port

    pinned: dict[str, str] = request.getfixturevalue("pinned_env")  # trains: after the check
    env = os.environ | pinned | {"BENTOML_HOME": str(STORE_HOME)}
    tag = build_bento(env)
    image = f"f1-predictor:test-{uuid.uuid4().hex[:8]}"
    built = subprocess.run([BENTOML_BIN, "containerize", tag, "-t", image],
                           cwd=containerize_cwd(), env=env, capture_output=True, text=True,
                           timeout=1800)  # fmt: skip
    assert built.returncode == 0, (built.stdout + built.stderr)[-4000:]
    name = f"f1-predictor-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    try:
        config = json.loads(
            _docker("image", "inspect", "--format", "{{json .Config}}", image).stdout
        )
        uid, _ = bentoml_constants()
        assert config["User"] == f"{uid}:{uid}"
        assert "/readyz" in " ".join(config["Healthcheck"]["Test"])
        assert f"{PORT}/tcp" in config["ExposedPorts"]
        assert "OMP_NUM_THREADS=1" in config["Env"]
        assert sorted(config["Volumes"]) == sorted(mounted_paths())

        env_args = [a for k, v in pinned.items() for a in ("-e", f"{k}={v}")]
        run = _docker(
            "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:{PORT}", "--read-only",
            "--user", str(uid), "-e", "F1_FRONT_WORKERS=1", *env_args, image,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=3).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            state = _docker("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
            assert state == "running", _docker("logs", name).stderr[-3000:]
            assert time.monotonic() < deadline, _docker("logs", name).stderr[-3000:]
            time.sleep(1)
        r = httpx.post(f"{url}/predict_full", json=KNOWN_EVENT, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["metadata"]["model_versions"]["stage2"] == pinned["F1_STAGE2_MODEL"]
        assert _docker("exec", name, "id", "-u").stdout.strip() == str(uid)
        # fresh volumes took the image's owner and mode, as ECS task volumes do
        owners = _docker("exec", name, "stat", "-c", "%n %u %a", "/tmp", "/home/bentoml/runtime")
        assert owners.stdout.split("\n")[:2] == ["/tmp 0 1777", f"/home/bentoml/runtime {uid} 755"]
        # the HEALTHCHECK itself (first run after --interval=30s)
        deadline = time.monotonic() + 120
        health = ""
        while time.monotonic() < deadline:
            health = _docker("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()
            if health in ("healthy", "unhealthy"):
                break
            time.sleep(2)
        assert health == "healthy", _docker(
            "inspect", "--format", "{{json .State.Health}}", name
        ).stdout
    finally:
        _docker("rm", "-f", "-v", name)
        _docker("rmi", "-f", image)
