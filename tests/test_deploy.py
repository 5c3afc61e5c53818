"""What CI can check of the image and deploy/ without Docker or a cluster."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import yaml
from aiohttp.test_utils import TestClient

from payhooks.embedded_redis import free_port
from payhooks.samples import stripe as samples
from payhooks.sandbox.nexudus import SandboxState
from payhooks.sandbox.server import wait_until_ready
from payhooks.settings import Settings
from service.app import create_app
from tests.conftest import STRIPE_SECRET
from tests.test_processes import worker_env

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = BIN / name
    return str(found) if found.exists() else (shutil.which(name) or name)


def documents(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def settings_variables() -> set[str]:
    source = (ROOT / "payhooks" / "settings.py").read_text()
    return set(re.findall(r'env, "([A-Z][A-Z0-9_]+)"', source))


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(  # noqa: PLW1510
        [tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_manifests_validate_against_the_schemas() -> None:
    manifests = [
        p
        for p in sorted((DEPLOY / "kubernetes").glob("*.yaml"))
        if p.name not in ("keda.yaml", "kustomization.yaml")
    ]
    result = subprocess.run(  # noqa: PLW1510
        [tool("kubernetes-validate"), "--strict", *map(str, manifests)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout, result.stdout
    assert "WARN" not in result.stdout, result.stdout


def test_keda_objects_validate_and_watch_the_rq_queue() -> None:
    import jsonschema

    keda = DEPLOY / "kubernetes" / "keda.yaml"
    schema = json.loads((DEPLOY / "kubernetes" / "keda.schema.json").read_text())
    for document in documents(keda):
        jsonschema.validate(document, schema)
    [scaled] = [d for d in documents(keda) if d["kind"] == "ScaledObject"]
    [configmap] = documents(DEPLOY / "kubernetes" / "configmap.yaml")
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"  # KEDA's redis-lists scaler
    assert trigger["metadata"]["listName"] == f"rq:queue:{configmap['data']['PAYHOOKS_QUEUE']}"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "payhooks-worker"


def test_kubernetes_shutdown_and_security_settings() -> None:
    [configmap] = documents(DEPLOY / "kubernetes" / "configmap.yaml")
    job_timeout = int(configmap["data"]["JOB_TIMEOUT_SECONDS"])
    [worker] = documents(DEPLOY / "kubernetes" / "worker.yaml")
    receiver = documents(DEPLOY / "kubernetes" / "receiver.yaml")[0]
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > job_timeout
    assert receiver["spec"]["replicas"] >= 2
    for deployment in (worker, receiver):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        [container] = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["resources"]["limits"]
        assert container["resources"]["requests"]
        names = {
            e.get("configMapRef", e.get("secretRef", {})).get("name") for e in container["envFrom"]
        }
        assert names == {"payhooks"}
    kinds = {d["kind"] for d in documents(DEPLOY / "kubernetes" / "receiver.yaml")}
    assert kinds == {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"}


def test_secret_template_holds_placeholders_only() -> None:
    [secret] = documents(DEPLOY / "kubernetes" / "secret.example.yaml")
    for value in secret["stringData"].values():
        assert value == "" or "REPLACE_ME" in value or value.endswith("example.com")


def test_compose_file_is_valid_and_durable() -> None:
    compose = DEPLOY / "compose" / "compose.yaml"
    docker = shutil.which("docker")
    has_compose = (
        docker is not None
        and subprocess.run(  # noqa: PLW1510
            [docker, "compose", "version"], capture_output=True
        ).returncode
        == 0
    )
    if has_compose:
        command = [str(docker), "compose", "-f", str(compose), "config", "--quiet"]
    else:
        command = [
            tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(compose),
        ]
    env = {**os.environ}
    result = subprocess.run(command, capture_output=True, text=True, env=env)  # noqa: PLW1510
    assert result.returncode == 0, result.stdout + result.stderr

    services = yaml.safe_load(compose.read_text())["services"]
    redis_command = services["redis"]["command"]
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"
    assert redis_command[redis_command.index("--appendfsync") + 1] == "everysec"
    assert "healthcheck" in services["redis"]
    assert all(p.startswith("127.0.0.1:") for p in services["rq-dashboard"]["ports"])
    grace = int(services["worker"]["stop_grace_period"].rstrip("s"))
    assert grace > 300  # longer than JOB_TIMEOUT_SECONDS


def test_every_variable_is_in_env_example_and_readme() -> None:
    variables = settings_variables()
    assert len(variables) > 20
    example = {
        line.split("=", 1)[0]
        for line in (DEPLOY / "compose" / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert variables - {"REDIS_URL"} == example  # compose sets REDIS_URL itself
    readme = (ROOT / "README.md").read_text()
    missing = [v for v in variables if f"| `{v}` |" not in readme]
    assert missing == []


def test_alerts_and_dashboard_use_only_exported_metrics(
    settings: Settings, redis: object, sandbox_state: SandboxState, run_worker: object
) -> None:
    import asyncio

    from aiohttp.test_utils import TestServer

    from tests.helpers import deliver

    deliver(
        settings,
        samples.event(
            "payment_intent.succeeded", samples.payment_intent(invoice_id=42, amount=Decimal(100))
        ),
    )
    run_worker()  # type: ignore[operator]

    async def scrape() -> str:
        async with TestClient(TestServer(create_app(settings))) as client:
            body, headers = samples.signed(b"{}", "whsec_wrong")
            await client.post("/webhooks/stripe", data=body, headers=headers)
            return await (await client.get("/metrics")).text()

    exposed = asyncio.run(scrape())
    names = set(
        re.findall(r"^([a-z_]+?)(?:_bucket|_sum|_count|_created)?(?:\{| )", exposed, re.MULTILINE)
    )
    names |= set(re.findall(r"^([a-z_]+)", exposed, re.MULTILINE))

    used = set()
    for group in yaml.safe_load((DEPLOY / "monitoring" / "alerts.yaml").read_text())["groups"]:
        for rule in group["rules"]:
            used |= set(re.findall(r"\b(payhooks_[a-z_]+)", rule["expr"]))
    dashboard = json.loads((DEPLOY / "monitoring" / "grafana-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"\b(payhooks_[a-z_]+)", target["expr"]))
    assert used
    assert used - names == set()
    assert 'payhooks_jobs_total{error_class="-",outcome="applied"} 1.0' in exposed
    assert (
        'payhooks_nexudus_calls_total{endpoint="PUT coworkerinvoices",status="200"} 1.0' in exposed
    )
    assert 'payhooks_webhooks_total{outcome="invalid_signature",provider="stripe"}' in exposed


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_installs_as_the_dockerfile_does_and_runs_both_roles(
    tmp_path: Path, settings: Settings, sandbox_state: SandboxState
) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    tools = re.search(r"pip install (setuptools==\S+ wheel==\S+)", dockerfile)
    assert tools is not None
    build, app = tmp_path / "build", tmp_path / "app"
    run = lambda *cmd: subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    run(sys.executable, "-m", "venv", str(build))
    run(str(build / "bin" / "pip"), "install", "--quiet", *tools.group(1).split())
    run(
        str(build / "bin" / "pip"),
        "wheel",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--wheel-dir",
        str(tmp_path / "wheels"),
        str(ROOT),
    )
    run(sys.executable, "-m", "venv", str(app))
    [wheel] = (tmp_path / "wheels").glob("payhooks-*.whl")
    run(
        str(app / "bin" / "pip"),
        "install",
        "--quiet",
        "--constraint",
        str(ROOT / "constraints.txt"),
        str(wheel),
    )
    payhooks = str(app / "bin" / "payhooks")
    env = worker_env(settings)

    port = free_port()
    server = subprocess.Popen(
        [payhooks, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until_ready(f"http://127.0.0.1:{port}/readyz", timeout=30)
        assert (
            subprocess.run(  # noqa: PLW1510
                [payhooks, "healthcheck", "--url", f"http://127.0.0.1:{port}/healthz"],
                env=env,
            ).returncode
            == 0
        )
        event = samples.event(
            "payment_intent.succeeded",
            samples.payment_intent(invoice_id=42, amount=Decimal("100.00")),
        )
        body, headers = samples.signed(event, STRIPE_SECRET)
        assert (
            httpx.post(
                f"http://127.0.0.1:{port}/webhooks/stripe", content=body, headers=headers
            ).status_code
            == 200
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    worker = subprocess.run(  # noqa: PLW1510
        [payhooks, "worker", "--burst"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert worker.returncode == 0, worker.stderr.decode()[-2000:]
    assert sandbox_state.invoices[42]["PaidOn"] is not None
