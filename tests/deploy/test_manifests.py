"""Offline checks of the deployment files: deploy/k8s, docker-compose.yml, deploy/prometheus.

* every Kubernetes manifest validates (strict) against the schemas bundled with
  ``kubernetes_validate``, for the oldest Kubernetes version we support and the newest bundled;
* the files agree with each other and with the service: ports, probe paths, image tag = project
  version, label selectors, kustomization resources, compose health check, Prometheus target;
* the assumptions about BentoML's generated image (user id, paths written at run time, port)
  hold for the installed BentoML.

The consistency rules are functions returning a list of problems, so the tests can show that a
deliberately broken copy of a manifest is caught (a rule that never fires proves nothing).
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus" / "prometheus.yml"

# Oldest Kubernetes minor we support, and the newest one kubernetes_validate bundles.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())

APP = "f1-predictor"
PORT = 3000
TMP_DIR = "/tmp"

Doc = dict[str, Any]


# ----------------------------------------------------------------------------- loading


def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def load_yaml_docs(path: Path) -> list[Doc]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S_DIR.glob("*.y*ml") if p.name != "kustomization.yaml")


def k8s_docs() -> list[tuple[str, Doc]]:
    return [(p.name, doc) for p in k8s_files() for doc in load_yaml_docs(p)]


def only(kind: str, docs: list[Doc] | None = None) -> Doc:
    pool = docs if docs is not None else [d for _, d in k8s_docs()]
    found = [d for d in pool if d.get("kind") == kind]
    assert len(found) == 1, f"expected exactly one {kind}, found {len(found)}"
    return found[0]


def kustomization() -> Doc:
    return load_yaml_docs(K8S_DIR / "kustomization.yaml")[0]


def compose() -> Doc:
    return load_yaml_docs(COMPOSE_FILE)[0]


def prometheus_config() -> Doc:
    return load_yaml_docs(PROMETHEUS_FILE)[0]


# ----------------------------------------------------------------------------- helpers


def api_container(deployment: Doc) -> Doc:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    named = [c for c in containers if c.get("name") == "api"]
    return named[0] if named else containers[0]


def resolve_port(container: Doc, port: int | str) -> int | None:
    """A probe / targetPort given by number or by the container port's name -> number."""
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    return None


def env_of(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


def selects(match_labels: dict[str, str] | None, labels: dict[str, str]) -> bool:
    """An (equality-based) selector selects the labels: non-empty and a subset."""
    return bool(match_labels) and all(labels.get(k) == v for k, v in match_labels.items())


def is_under(path: str, mount: str) -> bool:
    return PurePosixPath(path) == PurePosixPath(mount) or PurePosixPath(mount) in (
        PurePosixPath(path).parents
    )


def split_image(image: str) -> tuple[str, str]:
    """'registry/name:tag' -> ('registry/name', 'tag'); a port in the registry is kept."""
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, ""
    return name, tag


# ----------------------------------------------------------------------------- rules


def deployment_problems(dep: Doc, version: str) -> list[str]:
    problems: list[str] = []
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    c = api_container(dep)

    if spec.get("replicas") != 3:
        problems.append(f"replicas is {spec.get('replicas')}, expected 3")
    pod_labels = spec["template"]["metadata"].get("labels", {})
    if not selects(spec["selector"].get("matchLabels"), pod_labels):
        problems.append("deployment selector does not select its own pod template labels")
    if pod_labels.get("app.kubernetes.io/name") != APP:
        problems.append(f"pod label app.kubernetes.io/name is not {APP}")

    name, tag = split_image(c.get("image", ""))
    if name.rsplit("/", 1)[-1] != APP or not c["image"].startswith(f"{APP}:"):
        problems.append(f"image {c.get('image')!r} does not start with '{APP}:'")
    if tag != version:
        problems.append(f"image tag {tag!r} != project version {version!r}")

    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
    if ports.get("http") != PORT:
        problems.append(f"container port 'http' is {ports.get('http')}, expected {PORT}")

    expected_paths = {"livenessProbe": "/livez", "readinessProbe": "/readyz"}
    for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = c.get(probe_name)
        if not probe or "httpGet" not in probe:
            problems.append(f"{probe_name} missing or not an httpGet probe")
            continue
        get = probe["httpGet"]
        want = expected_paths.get(probe_name, ("/livez", "/readyz"))
        if get.get("path") not in (want if isinstance(want, tuple) else (want,)):
            problems.append(f"{probe_name} path {get.get('path')!r}, expected {want}")
        if resolve_port(c, get.get("port")) != PORT:
            problems.append(f"{probe_name} port {get.get('port')!r} is not the container port")
    startup = c.get("startupProbe") or {}
    window = startup.get("initialDelaySeconds", 0) + startup.get("periodSeconds", 10) * (
        startup.get("failureThreshold", 3)
    )
    if window < 60:
        problems.append(f"startupProbe tolerates only {window}s of start-up, expected >= 60s")
    if (c.get("livenessProbe") or {}).get("periodSeconds") != 30:
        problems.append("livenessProbe.periodSeconds is not 30 (the original health-check period)")

    resources = c.get("resources", {})
    want_resources = {
        # 512Mi originally; raised to the measured use (docs/deployment.md, BENCHMARKS.md)
        "requests": {"memory": "768Mi", "cpu": "250m"},
        "limits": {"memory": "1Gi", "cpu": "500m"},
    }
    if resources != want_resources:
        problems.append(f"resources {resources} != {want_resources}")

    env = env_of(c)
    if env.get("OMP_NUM_THREADS", {}).get("value") != "1":
        problems.append("OMP_NUM_THREADS is not set to '1'")
    for var in ("F1_STAGE1_MODEL", "F1_STAGE2_MODEL", "F1_FEATURES_MODEL"):
        if var not in env:
            problems.append(f"{var} not in the container env")
    if "PORT" in env:
        problems.append("PORT is set: BentoML's entrypoint would override BENTOML_PORT with it")

    pod_sc = pod.get("securityContext", {})
    sc = c.get("securityContext", {})
    if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
        problems.append("runAsNonRoot is not set")
    run_as = sc.get("runAsUser", pod_sc.get("runAsUser"))
    if not isinstance(run_as, int) or run_as == 0:
        problems.append("runAsUser must be a numeric non-root UID (the image's USER is a name)")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem is not true")
    if "ALL" not in sc.get("capabilities", {}).get("drop", []):
        problems.append("capabilities do not drop ALL")

    # Read-only root filesystem: every path BentoML writes must be on an emptyDir.
    empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    mounts = [m["mountPath"] for m in c.get("volumeMounts", []) if m.get("name") in empty_dirs]
    for m in c.get("volumeMounts", []):
        if m.get("name") not in {v["name"] for v in pod.get("volumes", [])}:
            problems.append(f"volumeMount {m.get('name')!r} has no volume")
    bentoml_home = env.get("BENTOML_HOME", {}).get("value")
    writable = {TMP_DIR: "/tmp (UDS sockets, temp files)"}
    if bentoml_home is None:
        problems.append("BENTOML_HOME not set: the image's /home/bentoml/ is read-only")
    else:
        writable[bentoml_home] = "BENTOML_HOME (store dirs, prometheus_multiproc_dir)"
    for path, what in writable.items():
        if not any(is_under(path, m) for m in mounts):
            problems.append(f"{path} ({what}) is not on an emptyDir mount")
    return problems


def service_problems(svc: Doc, dep: Doc) -> list[str]:
    problems: list[str] = []
    spec = svc["spec"]
    if spec.get("type", "ClusterIP") != "ClusterIP":
        problems.append(f"service type {spec.get('type')}, expected ClusterIP")
    pod_labels = dep["spec"]["template"]["metadata"].get("labels", {})
    if not selects(spec.get("selector"), pod_labels):
        problems.append("service selector does not match the pod labels")
    http = [p for p in spec.get("ports", []) if p.get("name") == "http"]
    if len(http) != 1:
        problems.append("service has no port named 'http'")
        return problems
    if http[0].get("port") != 80:
        problems.append(f"service port {http[0].get('port')}, expected 80")
    target = resolve_port(api_container(dep), http[0].get("targetPort", http[0].get("port")))
    if target != PORT:
        problems.append(f"service targetPort resolves to {target}, expected {PORT}")
    return problems


def hpa_problems(hpa: Doc, dep: Doc) -> list[str]:
    problems: list[str] = []
    spec = hpa["spec"]
    if hpa.get("apiVersion") != "autoscaling/v2":
        problems.append(f"HPA apiVersion {hpa.get('apiVersion')}, expected autoscaling/v2")
    ref = spec.get("scaleTargetRef", {})
    if (ref.get("apiVersion"), ref.get("kind"), ref.get("name")) != (
        dep["apiVersion"],
        dep["kind"],
        dep["metadata"]["name"],
    ):
        problems.append(f"HPA scaleTargetRef {ref} is not the Deployment")
    if (spec.get("minReplicas"), spec.get("maxReplicas")) != (3, 10):
        problems.append("HPA min/max replicas are not 3/10")
    if spec.get("minReplicas", 1) > dep["spec"].get("replicas", 1):
        problems.append("HPA minReplicas above the Deployment's replicas")
    cpu = [
        m["resource"]["target"]
        for m in spec.get("metrics", [])
        if m.get("type") == "Resource" and m["resource"]["name"] == "cpu"
    ]
    if cpu != [{"type": "Utilization", "averageUtilization": 70}]:
        problems.append(f"HPA CPU target {cpu}, expected 70% utilization")
    return problems


def pdb_problems(pdb: Doc, dep: Doc) -> list[str]:
    problems: list[str] = []
    spec = pdb["spec"]
    if pdb.get("apiVersion") != "policy/v1":
        problems.append(f"PDB apiVersion {pdb.get('apiVersion')}, expected policy/v1")
    if spec.get("minAvailable") != 2:
        problems.append(f"PDB minAvailable {spec.get('minAvailable')}, expected 2")
    if isinstance(spec.get("minAvailable"), int) and spec["minAvailable"] >= dep["spec"].get(
        "replicas", 1
    ):
        problems.append("PDB minAvailable >= replicas: a node drain could never proceed")
    pod_labels = dep["spec"]["template"]["metadata"].get("labels", {})
    if not selects(spec.get("selector", {}).get("matchLabels"), pod_labels):
        problems.append("PDB selector does not match the pod labels")
    return problems


def kustomization_problems(kust: Doc, files: list[str], dep: Doc, version: str) -> list[str]:
    problems: list[str] = []
    resources = kust.get("resources", [])
    for f in files:
        if f not in resources:
            problems.append(f"{f} is not listed in kustomization resources")
    for r in resources:
        if r not in files:
            problems.append(f"kustomization lists {r}, which is not a manifest in deploy/k8s")
    image_name, _ = split_image(api_container(dep)["image"])
    entries = [i for i in kust.get("images", []) if i.get("name") == image_name]
    if len(entries) != 1:
        problems.append(f"no images: entry named {image_name!r} (kustomize edit set image)")
    elif entries[0].get("newTag") not in (None, version):
        problems.append(f"images: newTag {entries[0].get('newTag')!r} != version {version!r}")
    common: dict[str, str] = dict(kust.get("commonLabels") or {})
    for entry in kust.get("labels") or []:
        common.update(entry.get("pairs") or {})
    if common.get("app.kubernetes.io/name") != APP:
        problems.append(f"kustomization does not add the label app.kubernetes.io/name: {APP}")
    return problems


def healthcheck_command(service: Doc) -> str:
    test = (service.get("healthcheck") or {}).get("test", [])
    return " ".join(test) if isinstance(test, list) else str(test)


def compose_problems(doc: Doc, version: str, root: Path) -> list[str]:
    problems: list[str] = []
    services = doc.get("services") or {}
    api = services.get("api")
    if api is None:
        return ["compose has no 'api' service"]
    if api.get("image") != f"{APP}:{version}":
        problems.append(f"api image {api.get('image')!r}, expected {APP}:{version}")
    if f"{PORT}:{PORT}" not in [str(p) for p in api.get("ports", [])]:
        problems.append(f"api does not publish {PORT}:{PORT}")
    check = healthcheck_command(api)
    if "/readyz" not in check or f":{PORT}" not in check:
        problems.append(f"api healthcheck does not hit :{PORT}/readyz: {check!r}")
    if "curl" in check or "wget" in check:
        problems.append("api healthcheck needs curl/wget, which BentoML's image does not have")
    if not api.get("restart"):
        problems.append("api has no restart policy")
    env = api.get("environment") or {}
    names = {str(e).split("=", 1)[0] for e in env} if isinstance(env, list) else set(env.keys())
    for var in ("OMP_NUM_THREADS", "F1_STAGE1_MODEL", "F1_STAGE2_MODEL", "F1_FEATURES_MODEL"):
        if var not in names:
            problems.append(f"api environment lacks {var}")

    prom = services.get("prometheus")
    if prom is None:
        return [*problems, "compose has no 'prometheus' service"]
    if prom.get("profiles") != ["monitoring"]:
        problems.append(f"prometheus profiles {prom.get('profiles')}, expected ['monitoring']")
    mounted = {}
    for volume in prom.get("volumes", []):
        source, _, rest = str(volume).partition(":")
        mounted[rest.split(":")[0]] = source
    config_arg = next(
        (a.split("=", 1)[1] for a in prom.get("command", []) if a.startswith("--config.file=")),
        "/etc/prometheus/prometheus.yml",
    )
    source = mounted.get(config_arg)
    if source is None:
        problems.append(f"prometheus config {config_arg} is not mounted")
    elif not (root / source).resolve().is_file():
        problems.append(f"prometheus config source {source} does not exist")
    elif (root / source).resolve() != PROMETHEUS_FILE:
        problems.append(f"prometheus mounts {source}, not deploy/prometheus/prometheus.yml")
    return problems


def prometheus_problems(doc: Doc) -> list[str]:
    jobs = doc.get("scrape_configs") or []
    for job in jobs:
        targets = [t for sc in job.get("static_configs", []) for t in sc.get("targets", [])]
        if f"api:{PORT}" in targets and job.get("metrics_path", "/metrics") == "/metrics":
            return []
    return [f"no scrape job targets api:{PORT} with metrics_path /metrics"]


# ----------------------------------------------------------------------------- schema validation


@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
@pytest.mark.parametrize("path", k8s_files(), ids=lambda p: p.name)
def test_manifest_validates_against_kubernetes_schema(path: Path, k8s_version: str) -> None:
    docs = load_yaml_docs(path)
    assert docs, f"{path.name} holds no document"
    for doc in docs:
        kubernetes_validate.validate(doc, k8s_version, strict=True)


def test_all_expected_kinds_present() -> None:
    kinds = sorted(doc["kind"] for _, doc in k8s_docs())
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]


def _unknown_field(d: Doc) -> None:
    api_container(d)["livenessProbe"]["httpGet"]["paht"] = "/livez"  # typo: strict rejects


def _wrong_type(d: Doc) -> None:
    d["spec"]["replicas"] = "three"


def _port_as_string(d: Doc) -> None:
    api_container(d)["ports"][0]["containerPort"] = "3000"


def _missing_required(d: Doc) -> None:
    del d["spec"]["selector"]


@pytest.mark.parametrize(
    "breakage", [_unknown_field, _wrong_type, _port_as_string, _missing_required]
)
def test_broken_manifest_fails_schema_validation(breakage: Callable[[Doc], None]) -> None:
    broken = copy.deepcopy(only("Deployment"))
    breakage(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


# ----------------------------------------------------------------------------- consistency


def test_deployment_is_consistent() -> None:
    assert deployment_problems(only("Deployment"), project_version()) == []


def test_service_is_consistent() -> None:
    assert service_problems(only("Service"), only("Deployment")) == []


def test_hpa_is_consistent() -> None:
    assert hpa_problems(only("HorizontalPodAutoscaler"), only("Deployment")) == []


def test_pdb_is_consistent() -> None:
    assert pdb_problems(only("PodDisruptionBudget"), only("Deployment")) == []


def test_kustomization_lists_every_manifest_and_the_image() -> None:
    files = [p.name for p in k8s_files()]
    assert set(files) == {"deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml"}
    dep = only("Deployment")
    assert kustomization_problems(kustomization(), files, dep, project_version()) == []


def _set(path: list[str | int], value: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


CONTAINER = ["spec", "template", "spec", "containers", 0]


def _set_env(name: str, value: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        env_of(api_container(doc))[name]["value"] = value

    return mutate


def _drop_mount(path: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        c = api_container(doc)
        c["volumeMounts"] = [m for m in c["volumeMounts"] if m["mountPath"] != path]

    return mutate


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_set([*CONTAINER, "livenessProbe", "httpGet", "path"], "/health"), "livenessProbe path"),
        (_set([*CONTAINER, "readinessProbe", "httpGet", "path"], "/livez"), "readinessProbe"),
        (_set([*CONTAINER, "readinessProbe", "httpGet", "port"], 8080), "not the container"),
        (_set([*CONTAINER, "startupProbe", "failureThreshold"], 3), "startupProbe tolerates"),
        (_set([*CONTAINER, "ports", 0, "containerPort"], 8000), "container port 'http'"),
        (_set([*CONTAINER, "image"], "f1-predictor:0.0.9"), "project version"),
        (_set([*CONTAINER, "image"], "ghcr.io/x/other:0.1.0"), "does not start with"),
        (_set([*CONTAINER, "resources", "limits", "memory"], "2Gi"), "resources"),
        (_set([*CONTAINER, "securityContext", "readOnlyRootFilesystem"], False), "readOnlyRoot"),
        (_set([*CONTAINER, "securityContext", "capabilities", "drop"], []), "drop ALL"),
        (_set(["spec", "template", "metadata", "labels"], {"app": "x"}), "selector"),
        (_set(["spec", "replicas"], 1), "replicas"),
        (_drop_mount("/tmp"), "/tmp (UDS sockets"),
        (_drop_mount("/home/bentoml/runtime"), "BENTOML_HOME (store dirs"),
        (_set_env("BENTOML_HOME", "/home/bentoml/"), "not on an emptyDir"),
        (_set_env("OMP_NUM_THREADS", "4"), "OMP_NUM_THREADS"),
    ],
)
def test_deployment_rules_catch_a_broken_copy(mutate: Callable[[Doc], None], expected: str) -> None:
    broken = copy.deepcopy(only("Deployment"))
    mutate(broken)
    problems = deployment_problems(broken, project_version())
    assert any(expected in p for p in problems), problems


def test_cross_resource_rules_catch_broken_copies() -> None:
    dep = only("Deployment")
    svc = copy.deepcopy(only("Service"))
    svc["spec"]["ports"][0]["targetPort"] = "metrics"  # names no container port
    assert any("targetPort" in p for p in service_problems(svc, dep))
    svc = copy.deepcopy(only("Service"))
    svc["spec"]["selector"] = {"app.kubernetes.io/name": "someone-else"}
    assert any("selector" in p for p in service_problems(svc, dep))

    hpa = copy.deepcopy(only("HorizontalPodAutoscaler"))
    hpa["spec"]["scaleTargetRef"]["name"] = "f1-predictor-old"
    assert any("scaleTargetRef" in p for p in hpa_problems(hpa, dep))

    pdb = copy.deepcopy(only("PodDisruptionBudget"))
    pdb["spec"]["selector"]["matchLabels"] = {}
    assert any("selector" in p for p in pdb_problems(pdb, dep))
    pdb["spec"]["minAvailable"] = 3
    assert any("drain" in p for p in pdb_problems(pdb, dep))

    files = [p.name for p in k8s_files()]
    kust = copy.deepcopy(kustomization())
    kust["resources"].remove("pdb.yaml")
    assert "pdb.yaml is not listed in kustomization resources" in kustomization_problems(
        kust, [*files], dep, project_version()
    )
    kust = copy.deepcopy(kustomization())
    kust["images"][0]["name"] = "f1_predictor"
    assert any("images:" in p for p in kustomization_problems(kust, files, dep, project_version()))


# ----------------------------------------------------------------------------- BentoML's image


def test_manifests_match_the_installed_bentoml_image() -> None:
    """UID, BENTO_PATH and port of the generated image, read from the installed BentoML."""
    from bentoml._internal.container.generate import BENTO_HOME as IMAGE_BENTOML_HOME
    from bentoml._internal.container.generate import BENTO_PATH, BENTO_UID_GID

    dep = only("Deployment")
    c = api_container(dep)
    pod_sc = dep["spec"]["template"]["spec"]["securityContext"]
    assert pod_sc["runAsUser"] == BENTO_UID_GID == c["securityContext"]["runAsUser"]
    assert pod_sc["fsGroup"] == BENTO_UID_GID

    mounts = [m["mountPath"] for m in c["volumeMounts"]]
    # No mount may hide the bento (code + models) that the image ships.
    for m in mounts:
        assert not is_under(BENTO_PATH, m), f"{m} would shadow {BENTO_PATH}"
    # BENTOML_HOME is moved off the read-only image default, onto an emptyDir.
    home = env_of(c)["BENTOML_HOME"]["value"]
    assert PurePosixPath(home) != PurePosixPath(IMAGE_BENTOML_HOME)
    assert any(is_under(home, m) for m in mounts)
    assert any(is_under(f"{home}/prometheus_multiproc_dir", m) for m in mounts)

    import bentoml._internal.configuration as configuration

    defaults = Path(configuration.__file__).parent / "v2" / "default_configuration.yaml"
    http = load_yaml_docs(defaults)[0]["services"]["http"]
    assert http["port"] == PORT


def test_compose_healthcheck_works_without_curl() -> None:
    """BentoML's Debian image installs no curl; the health check must use python."""
    from bentoml._internal.container.frontend.dockerfile import CONTAINER_METADATA

    installs = CONTAINER_METADATA["debian"]["default_install_command"]
    check = healthcheck_command(compose()["services"]["api"])
    assert "python" in check
    assert "curl" not in check or "curl" in installs


# ----------------------------------------------------------------------------- compose, prometheus


def test_compose_structure() -> None:
    assert compose_problems(compose(), project_version(), ROOT) == []


def test_prometheus_scrapes_the_api() -> None:
    assert prometheus_problems(prometheus_config()) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["services"].pop("api"), "no 'api' service"),
        (lambda d: d["services"]["api"].update(ports=["8080:3000"]), "publish"),
        (lambda d: d["services"]["api"].update(image="f1-predictor:latest"), "api image"),
        (
            lambda d: d["services"]["api"]["healthcheck"].update(
                test=["CMD", "curl", "-f", "http://localhost:3000/readyz"]
            ),
            "curl",
        ),
        (
            lambda d: d["services"]["api"]["healthcheck"].update(
                test=["CMD", "python", "-c", "print('http://127.0.0.1:3000/livez')"]
            ),
            "/readyz",
        ),
        (lambda d: d["services"]["prometheus"].pop("profiles"), "profiles"),
        (
            lambda d: d["services"]["prometheus"].update(
                volumes=["./deploy/prometheus/missing.yml:/etc/prometheus/prometheus.yml:ro"]
            ),
            "does not exist",
        ),
    ],
)
def test_compose_rules_catch_a_broken_copy(mutate: Callable[[Doc], Any], expected: str) -> None:
    broken = copy.deepcopy(compose())
    mutate(broken)
    problems = compose_problems(broken, project_version(), ROOT)
    assert any(expected in p for p in problems), problems


def test_prometheus_rule_catches_a_wrong_target() -> None:
    broken = copy.deepcopy(prometheus_config())
    broken["scrape_configs"][0]["static_configs"][0]["targets"] = ["localhost:3000"]
    assert prometheus_problems(broken) != []
    broken = copy.deepcopy(prometheus_config())
    broken["scrape_configs"][0]["metrics_path"] = "/prometheus"
    assert prometheus_problems(broken) != []


def _docker_compose_missing() -> str | None:
    """Why `docker compose` cannot be used here, or None when it can."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        done = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`docker compose version` could not run: {exc}"
    if done.returncode != 0:
        first = (done.stderr or done.stdout).strip().splitlines()[:1]
        return f"`docker compose version` failed (no compose v2 plugin?): {' '.join(first)}"
    return None


def test_docker_compose_config_is_valid() -> None:
    """`docker compose config` parses and interpolates only: no Docker engine is needed."""
    missing = _docker_compose_missing()
    if missing is not None:
        pytest.skip(f"{missing}; the structural compose checks above still run")
    done = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr


# ----------------------------------------------------------------------------- kustomize build


def _kustomize_cmd() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def render(directory: Path) -> list[Doc]:
    cmd = _kustomize_cmd()
    assert cmd is not None
    done = subprocess.run([*cmd, str(directory)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


needs_kustomize = pytest.mark.skipif(
    _kustomize_cmd() is None, reason="neither kustomize nor kubectl is installed"
)


@needs_kustomize
def test_kustomize_build_renders_valid_consistent_manifests() -> None:
    docs = render(K8S_DIR)
    assert sorted(d["kind"] for d in docs) == sorted(d["kind"] for _, d in k8s_docs())
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == APP
    dep = only("Deployment", docs)
    assert deployment_problems(dep, project_version()) == []
    assert service_problems(only("Service", docs), dep) == []
    assert hpa_problems(only("HorizontalPodAutoscaler", docs), dep) == []
    assert pdb_problems(only("PodDisruptionBudget", docs), dep) == []


@needs_kustomize
def test_kustomize_set_image_retargets_the_deployment(tmp_path: Path) -> None:
    """What `kustomize edit set image f1-predictor=<registry>/f1-predictor:<tag>` relies on."""
    work = tmp_path / "k8s"
    shutil.copytree(K8S_DIR, work)
    new = "ghcr.io/example/f1-predictor:9.9.9"
    if shutil.which("kustomize"):
        subprocess.run(["kustomize", "edit", "set", "image", f"{APP}={new}"], cwd=work, check=True)
    else:  # kubectl has no `edit`: make the same change to the images: entry by hand
        kust = load_yaml_docs(work / "kustomization.yaml")[0]
        entry = next(i for i in kust["images"] if i["name"] == APP)
        entry["newName"], entry["newTag"] = split_image(new)
        (work / "kustomization.yaml").write_text(yaml.safe_dump(kust), encoding="utf-8")
    dep = only("Deployment", render(work))
    assert api_container(dep)["image"] == new
