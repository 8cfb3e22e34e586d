"""The deployment files run real entry points with real settings.

Docker is not needed: the compose file, the Kubernetes manifests, the Procfile and the
Dockerfile are parsed, and every command they run is checked against the project itself:
`pmsq <sub>` against `python -m pmsq.cli <sub> --help`, `celery -A pmsq.workers.app <sub>` against
the real Celery app and Celery's (and Flower's) own option tables, and every `PMSQ_*` name they
mention against the fields of `pmsq.settings.Settings` (which ignores unknown names, so a typo
would otherwise be silently dropped at run time).
"""

from __future__ import annotations

import functools
import importlib
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import pytest
import yaml
from celery import Celery
from celery.bin.celery import celery as celery_cli
from celery.utils.imports import symbol_by_name

from pmsq.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
PROCFILE = REPO_ROOT / "Procfile"
README = DEPLOY / "README.md"

#: The Celery app every `celery -A` must name.
CELERY_APP = "pmsq.workers.app"
#: Celery subcommands a deployment may run.
CELERY_ROLES = {"worker", "beat", "flower", "inspect"}
#: The roles every way of running pmsq must offer.
ROLES = {"api", "worker", "beat", "flower", "sandbox"}
#: Compose services that run third-party images, with the commands those images provide.
THIRD_PARTY = {"redis": {"redis-server", "redis-cli"}, "postgres": {"pg_isready"}}
PMSQ_NAME = re.compile(r"\bPMSQ_[A-Z0-9_]+\b")
#: Compose interpolation: ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}.
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*)|(:?\?)([^}]*))?\}")


@dataclass(frozen=True)
class Invocation:
    """One command a deployment file runs, and where it was found (for failure messages)."""

    where: str
    argv: tuple[str, ...]


# -- reading the files -----------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                documents.append((path.name, document))
    return documents


def _k8s(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in _k8s_documents() if d["kind"] == kind}


def _pod_spec(document: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = document["spec"]["template"]["spec"]
    return spec


def _containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    spec = _pod_spec(document)
    return [*spec.get("initContainers", []), *spec["containers"]]


def _procfile() -> dict[str, str]:
    roles = {}
    for line in PROCFILE.read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_-]+):\s*(.+)", line)
        if match:
            roles[match[1]] = match[2]
    return roles


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, rest = pending.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def _exec_form(arguments: str) -> list[str]:
    value = yaml.safe_load(arguments)  # a JSON array is YAML too
    assert isinstance(value, list), f"not exec form: {arguments}"
    return [str(v) for v in value]


def _interpolate(value: str) -> str:
    """A compose value as compose would see it with nothing set: defaults, else a stand-in."""

    def one(match: re.Match[str]) -> str:
        return match[3] if match[2] is not None else "set-by-operator"

    return INTERPOLATION.sub(one, value)


def _shell_words(command: str) -> tuple[str, ...]:
    """A shell command line as argv; `$VAR`/`$$VAR` stay as they are (they name a host)."""
    return tuple(shlex.split(command.replace("$$", "$")))


def _as_argv(command: list[str] | str) -> tuple[str, ...]:
    """argv of a command, unwrapping `sh -c` and Docker's CMD-SHELL / CMD forms."""
    if isinstance(command, str):
        return _shell_words(command)
    if command[:1] == ["CMD-SHELL"]:
        return _shell_words(command[1])
    if command[:1] == ["CMD"]:
        command = command[1:]
    if command[:2] in (["sh", "-c"], ["/bin/sh", "-c"]):
        return _shell_words(command[2])
    return tuple(str(part) for part in command)


# -- every command of every file ---------------------------------------------------------------


def _compose_invocations() -> Iterator[Invocation]:
    for name, service in _compose()["services"].items():
        if name in THIRD_PARTY:
            continue
        yield Invocation(f"compose service {name}", _as_argv(service["command"]))
        if "healthcheck" in service:
            yield Invocation(
                f"compose service {name} healthcheck", _as_argv(service["healthcheck"]["test"])
            )


def _k8s_invocations() -> Iterator[Invocation]:
    for filename, document in _k8s_documents():
        if document["kind"] not in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            continue
        for container in _containers(document):
            where = f"k8s {filename} {document['metadata']['name']}/{container['name']}"
            command = [*container.get("command", []), *container.get("args", [])]
            assert command, f"{where}: no command (the image's default is the API)"
            yield Invocation(where, _as_argv(command))
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                exec_probe = container.get(probe, {}).get("exec")
                if exec_probe:
                    yield Invocation(f"{where} {probe}", _as_argv(exec_probe["command"]))


def _procfile_invocations() -> Iterator[Invocation]:
    for role, command in _procfile().items():
        yield Invocation(f"Procfile {role}", _shell_words(command))


def _dockerfile_invocations() -> Iterator[Invocation]:
    entrypoint: list[str] = []
    for keyword, arguments in _dockerfile_instructions():
        if keyword == "ENTRYPOINT":
            entrypoint = _exec_form(arguments)
        if keyword == "CMD":
            command = _exec_form(arguments)
            # The entrypoint is tini, which runs the command it is given.
            assert entrypoint in ([], ["tini", "--"]), entrypoint
            yield Invocation("Dockerfile CMD", tuple(command))


def all_invocations() -> list[Invocation]:
    return [
        *_compose_invocations(),
        *_k8s_invocations(),
        *_procfile_invocations(),
        *_dockerfile_invocations(),
    ]


# -- what a real entry point is ------------------------------------------------------------------


@functools.cache
def _pmsq_help(subcommand: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pmsq.cli", subcommand, "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"pmsq {subcommand} --help failed:\n{result.stderr}"
    return result.stdout


def _flags(argv: tuple[str, ...]) -> list[str]:
    return [arg.split("=", 1)[0] for arg in argv if arg.startswith("-") and arg != "--"]


def _check_pmsq(invocation: Invocation) -> None:
    subcommand = invocation.argv[1]
    help_text = _pmsq_help(subcommand)
    for flag in _flags(invocation.argv[2:]):
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text), (
            f"{invocation.where}: `pmsq {subcommand}` has no option {flag}:\n{help_text}"
        )


@functools.cache
def _flower_options() -> frozenset[str]:
    from flower.options import options

    return frozenset(name.replace("_", "-") for name in options.as_dict())


def _celery_options(subcommand: str) -> set[str]:
    command = celery_cli.commands[subcommand]
    return {opt for param in command.params for opt in param.opts}


def _check_celery(invocation: Invocation) -> None:
    argv = list(invocation.argv[1:])
    global_options = {opt for param in celery_cli.params for opt in param.opts}
    assert argv[:2] == ["-A", CELERY_APP], (
        f"{invocation.where}: must start `celery -A {CELERY_APP}`: {invocation.argv}"
    )
    rest = argv[2:]
    while rest and rest[0].startswith("-"):  # other global options before the subcommand
        assert rest[0].split("=", 1)[0] in global_options, f"{invocation.where}: {rest[0]}"
        rest = rest[1:]
    subcommand, options = rest[0], rest[1:]
    assert subcommand in CELERY_ROLES, f"{invocation.where}: celery {subcommand}"
    if subcommand == "flower":
        for flag in _flags(tuple(options)):
            name = flag.lstrip("-").replace("_", "-")
            assert name in _flower_options(), f"{invocation.where}: Flower has no --{name}"
        return
    known = _celery_options(subcommand)
    for flag in _flags(tuple(options)):
        assert flag in known, f"{invocation.where}: `celery {subcommand}` has no option {flag}"
    if subcommand == "worker":
        queue = _option_value(options, "-Q", "--queues")
        assert queue == Settings().job_queue, (
            f"{invocation.where}: consumes {queue!r}, jobs are published to "
            f"{Settings().job_queue!r}"
        )
    if subcommand == "inspect":
        assert options[0] == "ping", f"{invocation.where}: inspect {options[0]}"
        destination = _option_value(options, "-d", "--destination")
        assert destination == "celery@$HOSTNAME", destination


def _option_value(options: list[str], *names: str) -> str | None:
    for i, option in enumerate(options):
        name, eq, value = option.partition("=")
        if name in names:
            return value if eq else options[i + 1]
    return None


def _check_python(invocation: Invocation) -> None:
    """Only a health check may run inline Python, and only to GET the API's /healthz."""
    assert "healthcheck" in invocation.where, f"{invocation.where}: {invocation.argv}"
    assert invocation.argv[1] == "-c" and "/healthz" in invocation.argv[2], invocation.argv


def test_the_files_run_every_role() -> None:
    assert set(_procfile()) >= ROLES
    assert set(_compose()["services"]) >= ROLES | {"migrate", "redis", "postgres"}
    deployments = {name.removeprefix("pmsq-") for name in _k8s("Deployment")}
    assert deployments >= ROLES - {"sandbox"}
    assert set(_k8s("Job")) == {"pmsq-migrate"}


@pytest.mark.parametrize("invocation", all_invocations(), ids=lambda i: i.where)
def test_every_command_is_a_real_entry_point(invocation: Invocation) -> None:
    program = invocation.argv[0]
    if program == "pmsq":
        _check_pmsq(invocation)
    elif program == "celery":
        _check_celery(invocation)
    elif program == "python":
        _check_python(invocation)
    else:
        pytest.fail(f"{invocation.where}: {program} is not an entry point of pmsq")


def test_the_celery_app_named_everywhere_is_the_real_one() -> None:
    module = importlib.import_module(CELERY_APP)
    assert isinstance(module.app, Celery)
    # `celery beat` runs without -S: the scheduler class comes from the app's config.
    scheduler = symbol_by_name(module.app.conf.beat_scheduler)
    assert scheduler.__module__.startswith("pmsq.scheduler.")
    assert module.app.conf.task_default_queue == Settings().job_queue
    # Task events cost a Redis PUBLISH each: off until Flower (or a setting) asks for them.
    assert module.app.conf.worker_send_task_events is Settings().task_events
    assert module.app.conf.worker_enable_remote_control, "Flower's enable_events needs it"


# -- settings ------------------------------------------------------------------------------------

SETTING_NAMES = {f"PMSQ_{name.upper()}" for name in Settings.model_fields}


def _scanned_files() -> list[Path]:
    return [COMPOSE, DOCKERFILE, PROCFILE, README, *sorted(K8S.glob("*.yaml"))]


@pytest.mark.parametrize("path", _scanned_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_pmsq_name_mentioned_is_a_setting(path: Path) -> None:
    """Values, comments and prose alike: a `PMSQ_` name that is not a setting misleads."""
    unknown = set(PMSQ_NAME.findall(path.read_text())) - SETTING_NAMES
    assert not unknown, f"{path.name} names settings that do not exist: {sorted(unknown)}"


def _environments() -> Iterator[tuple[str, dict[str, str]]]:
    """Each process's PMSQ_ environment as the files define it (secrets as stand-ins)."""
    base = {}
    for keyword, arguments in _dockerfile_instructions():
        if keyword == "ENV":
            for word in shlex.split(arguments):
                name, _, value = word.partition("=")
                base[name] = value
    yield "Dockerfile", base
    for name, service in _compose()["services"].items():
        if name not in THIRD_PARTY:
            env = {k: _interpolate(str(v)) for k, v in service.get("environment", {}).items()}
            yield f"compose {name}", {**base, **env}
    config = {k: str(v) for k, v in _k8s("ConfigMap")["pmsq-config"]["data"].items()}
    for filename, document in _k8s_documents():
        if document["kind"] in ("Deployment", "Job"):
            for container in _containers(document):
                env = dict(base)
                for source in container.get("envFrom", []):
                    assert source["configMapRef"]["name"] == "pmsq-config", filename
                    env.update(config)
                for variable in container.get("env", []):
                    env[variable["name"]] = variable.get("value", "set-by-operator")
                yield f"k8s {filename} {container['name']}", env


@pytest.mark.parametrize(("where", "env"), list(_environments()), ids=lambda x: x)
def test_every_setting_passed_exists_and_parses(
    where: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_env = {k: v for k, v in env.items() if k.startswith("PMSQ_")}
    unknown = set(settings_env) - SETTING_NAMES
    assert not unknown, f"{where} passes settings that do not exist: {sorted(unknown)}"
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    for name, value in settings_env.items():
        if name in ("PMSQ_SECRET_KEYS",) and value == "set-by-operator":
            continue  # a Fernet key the operator supplies
        monkeypatch.setenv(name, value)
    settings = Settings()  # raises on a value that does not parse
    assert settings.job_queue == Settings.model_fields["job_queue"].default


# -- compose -------------------------------------------------------------------------------------


def test_compose_workers_scale_and_two_beats_run() -> None:
    services = _compose()["services"]
    worker = services["worker"]
    assert "container_name" not in worker, "a fixed name forbids --scale"
    assert "ports" not in worker, "a host port forbids --scale"
    assert worker["deploy"]["replicas"] >= 1
    assert services["beat"]["deploy"]["replicas"] == 2
    assert "container_name" not in services["beat"]


def test_compose_migrates_once_before_the_processes_start() -> None:
    services = _compose()["services"]
    migrate = services["migrate"]
    assert _as_argv(migrate["command"]) == ("pmsq", "migrate")
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["postgres"]
    assert services["api"]["environment"]["PMSQ_AUTO_MIGRATE"] == "false"
    for name in ("api", "worker", "beat"):
        depends_on = services[name]["depends_on"]
        assert depends_on["migrate"]["condition"] == "service_completed_successfully", name
        assert depends_on["postgres"]["condition"] == "service_healthy", name


def test_compose_runs_one_image_and_keeps_the_sandbox_optional() -> None:
    services = _compose()["services"]
    ours = {name: s for name, s in services.items() if name not in THIRD_PARTY}
    assert len({s["image"] for s in ours.values()}) == 1
    assert all(s["build"]["dockerfile"] == "deploy/Dockerfile" for s in ours.values())
    assert services["sandbox"]["profiles"] == ["sandbox"]
    assert all("profiles" not in s for name, s in ours.items() if name != "sandbox")
    # The whole pmsq configuration is one shared anchor.
    assert "x-pmsq-env" in _compose()
    assert all(set(_compose()["x-pmsq-env"]) <= set(s["environment"]) for s in ours.values())


def test_compose_gives_a_warm_shutdown_time_to_finish() -> None:
    worker = _compose()["services"]["worker"]
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"
    grace = str(worker["stop_grace_period"])
    assert re.fullmatch(r"\d+s", grace) and int(grace[:-1]) > Settings().pms_timeout_s


# -- Kubernetes ----------------------------------------------------------------------------------


def test_k8s_secrets_are_references_only() -> None:
    kinds = [d["kind"] for _, d in _k8s_documents()]
    assert "Secret" not in kinds, "the manifests reference the Secret; they must not hold it"
    config = _k8s("ConfigMap")["pmsq-config"]["data"]
    assert "PMSQ_SECRET_KEYS" not in config and "PMSQ_DATABASE_URL" not in config
    secret_names = {"PMSQ_SECRET_KEYS", "PMSQ_DATABASE_URL", "FLOWER_BASIC_AUTH"}
    seen = set()
    for _, document in _k8s_documents():
        if document["kind"] not in ("Deployment", "Job"):
            continue
        for container in _containers(document):
            for variable in container.get("env", []):
                if variable["name"] in secret_names:
                    assert "value" not in variable, variable
                    assert variable["valueFrom"]["secretKeyRef"]["name"] == "pmsq-secrets"
                    seen.add(variable["name"])
    assert seen == secret_names


def test_k8s_roles_replicas_resources_and_probes() -> None:
    deployments = _k8s("Deployment")
    worker = deployments["pmsq-worker"]
    assert worker["spec"]["replicas"] == 3
    assert deployments["pmsq-beat"]["spec"]["replicas"] == 2
    for name, document in {**deployments, **_k8s("Job")}.items():
        assert _pod_spec(document)["securityContext"]["runAsNonRoot"] is True, name
        for container in _containers(document):
            assert container["image"] == "pmsq", name  # kustomize sets the registry and tag
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert {"cpu", "memory"} <= set(resources["limits"]), name

    grace = _pod_spec(worker).get("terminationGracePeriodSeconds", 30)
    assert grace > Settings().pms_timeout_s, "warm shutdown must outlast one PMS request"
    worker_probe = _containers(worker)[0]["livenessProbe"]["exec"]["command"]
    assert _as_argv(worker_probe)[:5] == ("celery", "-A", CELERY_APP, "inspect", "ping")

    api = _containers(deployments["pmsq-api"])[0]
    api_paths = _api_paths()
    for probe in ("livenessProbe", "readinessProbe"):
        path = api[probe]["httpGet"]["path"]
        assert path == "/healthz" and path in api_paths
    flower = _containers(deployments["pmsq-flower"])[0]
    assert flower["readinessProbe"]["httpGet"]["path"] == "/healthcheck"


def _api_paths() -> set[str]:
    from pmsq.api.app import create_app

    app = create_app(Settings(), MagicMock(), MagicMock(), MagicMock())
    return {route.path for route in app.routes if hasattr(route, "path")}


def test_k8s_services_select_their_deployments_and_ports() -> None:
    deployments = _k8s("Deployment")
    for name, service in _k8s("Service").items():
        selected = deployments[name]
        labels = selected["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items(), name
        assert selected["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        ports = {p["name"] for c in _containers(selected) for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports, name
    assert set(_k8s("Service")) == {"pmsq-api", "pmsq-flower"}


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests
    assert [image["name"] for image in kustomization["images"]] == ["pmsq"]


# -- Dockerfile ----------------------------------------------------------------------------------


def test_dockerfile_builds_one_slim_non_root_image_without_dev_extras() -> None:
    instructions = _dockerfile_instructions()
    args = dict(a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a)
    bases = [a.split()[0] for k, a in instructions if k == "FROM"]
    assert {base.replace("${PYTHON_IMAGE}", args["PYTHON_IMAGE"]) for base in bases} == {
        "python:3.11-slim"
    }
    users = [a for k, a in instructions if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    installs = [a for k, a in instructions if k == "RUN" and "pip install" in a]
    assert installs and all("[dev]" not in a and " -e " not in a for a in installs)


def test_dockerfile_installs_the_otel_extra_so_traces_need_no_rebuild() -> None:
    """The README switches traces on with `OTEL_TRACES_EXPORTER=otlp_proto_http`, whose
    exporter comes with the otel extra: the image must have it for the variable to work."""
    installs = [a for k, a in _dockerfile_instructions() if k == "RUN" and "pip install" in a]
    assert any(".[otel]" in a for a in installs), installs


def test_dockerfile_copies_every_package_the_project_ships() -> None:
    copied = set()
    for keyword, arguments in _dockerfile_instructions():
        if keyword == "COPY" and not arguments.startswith("--from"):
            *sources, _destination = arguments.split()
            for source in sources:
                if not source.endswith("*"):  # optional files (README.md*)
                    assert (REPO_ROOT / source).exists(), f"COPY {source}: no such path"
                copied.add(source.rstrip("/"))
    packages = {
        p.parent.name
        for p in REPO_ROOT.glob("*/__init__.py")
        if p.parent.name not in ("tests", "bench")
    }
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"
    assert "pyproject.toml" in copied
