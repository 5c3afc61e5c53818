"""What CI can check of the image and deploy/ without Docker or a cluster."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp.test_utils import TestClient

from payhooks.devtools.embedded_redis import free_port
from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.devtools.sandbox.server import wait_until_ready
from payhooks.providers.stripe import sample as samples
from payhooks.settings import Settings, every_variable
from service.app import create_app
from tests.support.paths import REPO
from tests.support.processes import worker_env
from tests.support.settings import STRIPE_SECRET

ROOT = REPO
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent


UV = ROOT / ".tools" / "uv" / "bin" / "uv"


def dockerfile_sync_command(environment: str) -> list[str]:
    """The Dockerfile's ``uv sync`` into ``environment``, less its ``--python``."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    found = re.search(
        rf"UV_PROJECT_ENVIRONMENT={re.escape(environment)} /opt/uv/bin/uv (sync [^\n]*)", dockerfile
    )
    assert found is not None
    words = found.group(1).split()
    at = words.index("--python")
    return words[:at] + words[at + 2 :]


def installed_versions(environment: Path) -> dict[str, str]:
    """Each distribution installed in a virtual environment: normalised name -> version."""
    [site] = environment.glob("lib/python3*/site-packages")
    versions = {}
    for info in site.glob("*.dist-info"):
        metadata = (info / "METADATA").read_text(errors="replace")
        name = re.search(r"^Name: (.+)$", metadata, re.MULTILINE)
        version = re.search(r"^Version: (.+)$", metadata, re.MULTILINE)
        assert name is not None
        assert version is not None
        versions[re.sub(r"[-_.]+", "-", name.group(1).strip()).lower()] = version.group(1).strip()
    return versions


def locked_versions() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {package["name"]: package.get("version", "") for package in lock["package"]}


def tool(name: str) -> str:
    found = BIN / name
    return str(found) if found.exists() else (shutil.which(name) or name)


def documents(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def settings_variables() -> set[str]:
    return set(every_variable())


def secret_variables() -> set[str]:
    """The variables of the settings kept out of ``repr`` (secrets)."""
    return {variable for variable, secret in every_variable().items() if secret}


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(  # noqa: PLW1510
        [tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


KUBERNETES = DEPLOY / "kubernetes"


def kustomize(directory: Path) -> list[dict]:  # type: ignore[type-arg]
    """Render a kustomization with the parts of kustomize's semantics deploy/ uses:
    resources (files and directories), delete patches, strategic-merge patches of maps
    (a null deletes a key), JSON patches (test, replace) on the objects a target selects,
    and image tags."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    rendered = []
    for resource in spec.get("resources", []):
        path = directory / resource
        rendered += kustomize(path) if path.is_dir() else documents(path)
    for patch in spec.get("patches", []):
        body = yaml.safe_load(
            (directory / patch["path"]).read_text() if "path" in patch else patch["patch"]
        )
        if isinstance(body, list):  # a JSON patch (RFC 6902)
            for document in rendered:
                if selected(document, patch["target"]):
                    json_patch(document, body)
        elif body.pop("$patch", None) == "delete":
            rendered = [d for d in rendered if identity(d) != identity(body)]
        else:
            [document] = [d for d in rendered if identity(d) == identity(body)]
            merge(document, body)
    for image in spec.get("images", []):
        for document in rendered:
            for container in containers(document):
                if container["image"].partition(":")[0] == image["name"]:
                    container["image"] = f"{image['name']}:{image['newTag']}"
    return rendered


def selected(document: dict, target: dict) -> bool:  # type: ignore[type-arg]
    labels = document["metadata"].get("labels", {})
    wanted = dict(pair.split("=") for pair in target.get("labelSelector", "").split(",") if pair)
    return (
        target.get("kind", document["kind"]) == document["kind"]
        and target.get("name", document["metadata"]["name"]) == document["metadata"]["name"]
        and all(labels.get(key) == value for key, value in wanted.items())
    )


def merge(document: dict, patch: dict) -> None:  # type: ignore[type-arg]
    """A strategic-merge patch of maps only (lists merge by key in kustomize: not here)."""
    for key, value in patch.items():
        assert not isinstance(value, list), "list merges are not rendered here"
        if value is None:
            document.pop(key, None)
        elif isinstance(value, dict) and isinstance(document.get(key), dict):
            merge(document[key], value)
        else:
            document[key] = value


def json_patch(document: dict, operations: list[dict]) -> None:  # type: ignore[type-arg]
    for operation in operations:
        *parents, last = operation["path"].strip("/").split("/")
        node: Any = document
        for step in parents:
            node = node[int(step)] if isinstance(node, list) else node[step]
        key = int(last) if isinstance(node, list) else last
        if operation["op"] == "test":
            assert node[key] == operation["value"], f"{identity(document)}: {operation}"
        else:
            assert operation["op"] == "replace", "only test and replace are rendered here"
            node[key] = operation["value"]


def identity(document: dict) -> tuple[str, str]:  # type: ignore[type-arg]
    return document["kind"], document["metadata"]["name"]


def containers(document: dict) -> list[dict]:  # type: ignore[type-arg]
    if document["kind"] != "Deployment":
        return []
    return list(document["spec"]["template"]["spec"]["containers"])


def by_identity(rendered: list[dict]) -> dict[tuple[str, str], dict]:  # type: ignore[type-arg]
    return {identity(d): d for d in rendered}


SENTINEL = KUBERNETES / "sentinel"
POLICIES = KUBERNETES / "network-policies"
VARIANTS = {
    "default": KUBERNETES,
    "keda": KUBERNETES / "keda",
    "sentinel": SENTINEL,
    "sentinel-keda": KUBERNETES / "sentinel-keda",
}
#: What KEDA documents for its redis-sentinel scaler (keda.sh, "Redis Lists (supports Redis
#: Sentinel)"): trigger metadata, and TriggerAuthentication parameters.
KEDA_SENTINEL_METADATA = {
    "addresses",
    "addressesFromEnv",
    "hosts",
    "hostsFromEnv",
    "ports",
    "portsFromEnv",
    "sentinelMaster",
    "sentinelMasterFromEnv",
    "usernameFromEnv",
    "passwordFromEnv",
    "sentinelUsernameFromEnv",
    "sentinelPasswordFromEnv",
    "listName",
    "listLength",
    "activationListLength",
    "enableTLS",
    "unsafeSsl",
    "databaseIndex",
}
KEDA_SENTINEL_AUTH = {
    "addresses",
    "hosts",
    "ports",
    "sentinelMaster",
    "username",
    "password",
    "sentinelUsername",
    "sentinelPassword",
    "tls",
    "ca",
    "cert",
    "key",
    "keyPassword",
}


RENDERED = {**VARIANTS, "network-policies": POLICIES}
#: Templates beside the kustomizations, applied by hand.
EXAMPLES = ("secret", "ingress", "ops-job", "rq-dashboard")


@pytest.mark.parametrize("variant", RENDERED.values(), ids=RENDERED.keys())
def test_kustomizations_render_as_kubectl_does(variant: Path) -> None:
    rendered = by_identity(kustomize(variant))
    kubectl = shutil.which("kubectl")
    if kubectl is not None:  # the real kustomize, where the machine has it
        output = subprocess.run(  # noqa: PLW1510
            [kubectl, "kustomize", str(variant)], capture_output=True, text=True
        )
        assert output.returncode == 0, output.stderr
        assert by_identity([d for d in yaml.safe_load_all(output.stdout) if d]) == rendered


def test_default_deployment_needs_nothing_but_kubernetes_and_keda_is_an_overlay() -> None:
    default = by_identity(kustomize(KUBERNETES))
    keda = by_identity(kustomize(KUBERNETES / "keda"))
    # `kubectl apply -k deploy/kubernetes` on a cluster without KEDA: no custom resources.
    assert {d["apiVersion"].split("/")[0] for d in default.values()} <= {
        "v1",
        "apps",
        "policy",
        "autoscaling",
    }
    assert ("HorizontalPodAutoscaler", "payhooks-worker") in default
    # The KEDA overlay: the same objects, KEDA's ScaledObject in place of the worker's HPA.
    assert set(keda) - set(default) == {
        ("ScaledObject", "payhooks-worker"),
        ("TriggerAuthentication", "payhooks-redis"),
    }
    assert set(default) - set(keda) == {("HorizontalPodAutoscaler", "payhooks-worker")}
    for name, document in default.items():
        if name in keda:
            assert keda[name] == document


def test_kubernetes_manifests_validate_against_the_schemas(tmp_path: Path) -> None:
    import jsonschema

    schema = json.loads((KUBERNETES / "keda" / "keda.schema.json").read_text())
    files = [KUBERNETES / f"{name}.example.yaml" for name in EXAMPLES]
    for name, variant in RENDERED.items():
        rendered = tmp_path / f"{name}.yaml"
        objects = kustomize(variant)
        # kubernetes-validate has no schemas for KEDA's custom resources: ours has.
        for document in objects:
            if document["apiVersion"].startswith("keda.sh/"):
                jsonschema.validate(document, schema)
        rendered.write_text(
            yaml.safe_dump_all(d for d in objects if not d["apiVersion"].startswith("keda.sh/"))
        )
        files.append(rendered)
    result = subprocess.run(  # noqa: PLW1510
        [tool("kubernetes-validate"), "--strict", *map(str, files)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout, result.stdout
    assert "WARN" not in result.stdout, result.stdout


#: Private and link-local ranges, which "the internet" (Nexudus, the providers) leaves out.
PRIVATE = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"}


def policies_for(labels: dict[str, str]) -> list[dict]:  # type: ignore[type-arg]
    return [
        policy
        for policy in kustomize(POLICIES)
        if policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    ]


def allowed(labels: dict[str, str], direction: str) -> list[dict]:  # type: ignore[type-arg]
    """The rules that let a pod with these labels connect (egress) or be connected to
    (ingress); NetworkPolicies add up."""
    return [
        rule
        for policy in policies_for(labels)
        if direction.capitalize() in policy["spec"]["policyTypes"]
        for rule in policy["spec"].get(direction, [])
    ]


def ports(rules: list[dict]) -> set[tuple[str, int]]:  # type: ignore[type-arg]
    return {(port["protocol"], port["port"]) for rule in rules for port in rule["ports"]}


@pytest.mark.parametrize("role", ["receiver", "worker", "scheduler"])
def test_network_policies_let_each_role_reach_what_it_needs_and_nothing_else(role: str) -> None:
    labels = {"app.kubernetes.io/name": "payhooks", "app.kubernetes.io/component": role}
    rendered = by_identity(kustomize(KUBERNETES))
    for (kind, name), document in rendered.items():
        # The policies' labels are the Deployments' (the scheduler's too, once it is there).
        if kind == "Deployment" and name == f"payhooks-{role}":
            assert document["spec"]["template"]["metadata"]["labels"] == labels
    # Everything is denied to and from every payhooks pod unless a rule allows it.
    [deny] = [p for p in policies_for(labels) if p["metadata"]["name"] == "payhooks-default-deny"]
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert set(deny["spec"]) == {"podSelector", "policyTypes"}
    egress = allowed(labels, "egress")
    # DNS, Redis (the port of REDIS_ADDRESS, the Sentinels' as the sentinel overlay has
    # them), and HTTPS to addresses outside the private ranges; nothing else.
    address = rendered["ConfigMap", "payhooks"]["data"]["REDIS_ADDRESS"]
    sentinels = by_identity(kustomize(SENTINEL))["ConfigMap", "payhooks"]["data"]
    redis_ports = {int(address.rpartition(":")[2])} | {
        int(item.rpartition(":")[2]) for item in sentinels["REDIS_SENTINELS"].split(",")
    }
    assert {("TCP", port) for port in redis_ports} | {("UDP", 53), ("TCP", 53)} <= ports(egress)
    internet = [r for r in egress if any("ipBlock" in peer for peer in r["to"])]
    assert ports(internet) == {("TCP", 443)}
    for rule in internet:
        for peer in rule["to"]:
            assert set(peer["ipBlock"]["except"]) == PRIVATE
    assert ports(egress) - ports(internet) == {("TCP", 6379), ("TCP", 6380), ("TCP", 26379)} | {
        ("UDP", 53),
        ("TCP", 53),
    }
    # Only the receiver takes connections: on its one port, from the ingress controller's
    # namespace and Prometheus's.
    ingress = allowed(labels, "ingress")
    if role != "receiver":
        assert ingress == []
        return
    [container] = containers(rendered["Deployment", "payhooks-receiver"])
    [port] = container["ports"]
    assert ports(ingress) == {("TCP", port["containerPort"])}
    sources = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for rule in ingress
        for peer in rule["from"]
    }
    assert sources == {"ingress-nginx", "monitoring"}
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("#### Network policies") :]
    for name in ("receiver", "worker", "scheduler"):
        assert f"| {name} |" in section[: section.index("\n#")]


def test_ops_job_runs_a_payhooks_command_as_the_receiver_runs() -> None:
    from payhooks.cli.main import main

    [job] = documents(KUBERNETES / "ops-job.example.yaml")
    receiver = by_identity(kustomize(KUBERNETES))["Deployment", "payhooks-receiver"]
    pod, receiving = job["spec"]["template"]["spec"], receiver["spec"]["template"]["spec"]
    [container], [serving] = pod["containers"], receiving["containers"]
    # The receiver's environment (replay-event needs a provider's secrets), image and
    # hardening; run once, never retried by Kubernetes.
    for key in ("envFrom", "env", "image", "securityContext"):
        assert container[key] == serving[key], key
    assert pod["securityContext"] == receiving["securityContext"]
    assert pod["automountServiceAccountToken"] is False
    assert (pod["restartPolicy"], job["spec"]["backoffLimit"]) == ("Never", 0)
    assert job["metadata"]["labels"]["app.kubernetes.io/name"] == "payhooks"  # the policies'
    with pytest.raises(SystemExit) as parsed:  # a command payhooks has
        main([*container["args"], "--help"])
    assert parsed.value.code == 0
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("#### Where ops commands run") :]
    section = section[: section.index("\n#")]
    assert "kubectl exec" in section
    assert "ops-job.example.yaml" in section
    assert "rq-dashboard.example.yaml" in section


def test_rq_dashboard_manifest_is_reached_only_through_kubernetes_and_asks_for_a_password() -> None:
    [dashboard] = documents(KUBERNETES / "rq-dashboard.example.yaml")
    assert dashboard["kind"] == "Deployment"  # no Service: port-forward only
    pod = dashboard["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = container["args"]
    assert args[args.index("--bind") + 1] == "127.0.0.1"
    env = {e["name"]: e for e in container["env"]}
    # rq-dashboard's basic auth (RQ_DASHBOARD_USERNAME/PASSWORD), from a Secret of its own.
    for variable in ("RQ_DASHBOARD_USERNAME", "RQ_DASHBOARD_PASSWORD"):
        assert env[variable]["valueFrom"]["secretKeyRef"]["name"] == "payhooks-dashboard"
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "payhooks",
        "key": "REDIS_PASSWORD",
    }
    assert (
        env["RQ_DASHBOARD_REDIS_URL"]["value"] == "rediss://:$(REDIS_PASSWORD)@$(REDIS_ADDRESS)/0"
    )
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    image = compose["services"]["rq-dashboard"]["image"]  # ${…:-payhooks-dashboard:0.1.0}
    assert container["image"].endswith("/" + image.rpartition(":-")[2].rstrip("}"))
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    [mount] = container["volumeMounts"]
    assert mount["mountPath"] == "/tmp"


def resolved(value: str, data: dict[str, str]) -> str:
    """A container variable as Kubernetes expands it: $(NAME) from the environment."""
    return re.sub(r"\$\(([A-Z0-9_]+)\)", lambda found: data[found.group(1)], value)


def test_sentinel_overlay_writes_the_sentinels_once_and_acknowledges_after_a_replica() -> None:
    from payhooks.cli.config_check import misspelled
    from payhooks.storage.redis_connect import SentinelTarget

    default = by_identity(kustomize(KUBERNETES))
    sentinel = by_identity(kustomize(SENTINEL))
    assert set(sentinel) == set(default)
    data = sentinel["ConfigMap", "payhooks"]["data"]
    assert data["REDIS_ACK_REPLICAS"] == "1"
    assert "REDIS_ADDRESS" not in data  # one server's address would mean nothing here
    deployments = [name for kind, name in sentinel if kind == "Deployment"]
    assert deployments
    for name in deployments:
        [container] = containers(sentinel["Deployment", name])
        [url] = [e["value"] for e in container["env"] if e["name"] == "REDIS_URL"]
        assert url == "rediss+sentinel://$(REDIS_SENTINELS)/$(REDIS_MASTER_NAME)/0"
        target = SentinelTarget.parse(resolved(url, data))
        assert (target.master, target.db, target.tls) == (data["REDIS_MASTER_NAME"], 0, True)
        assert len(target.sentinels) == 3
        # Nothing else differs from the default deployment's.
        container["env"] = containers(default["Deployment", name])[0]["env"]
        assert sentinel["Deployment", name] == default["Deployment", name]
    # The Sentinels are written once: the overlay's ConfigMap patch.
    first = data["REDIS_SENTINELS"].split(",")[0].rpartition(":")[0]
    assert [p for p in KUBERNETES.rglob("*.yaml") if first in p.read_text()] == [
        SENTINEL / "sentinel.yaml"
    ]
    # The variables only the manifests read are not taken for misspelt settings.
    [secret] = documents(KUBERNETES / "secret.example.yaml")
    assert misspelled({**data, **secret["stringData"], "REDIS_URL": "x"}) == []


def test_sentinel_keda_overlay_scales_through_the_sentinels_with_payhooks_own_values() -> None:
    sentinel = by_identity(kustomize(SENTINEL))
    keda = by_identity(kustomize(KUBERNETES / "sentinel-keda"))
    assert set(keda) - set(sentinel) == {
        ("ScaledObject", "payhooks-worker"),
        ("TriggerAuthentication", "payhooks-redis"),
    }
    assert set(sentinel) - set(keda) == {("HorizontalPodAutoscaler", "payhooks-worker")}
    data = keda["ConfigMap", "payhooks"]["data"]
    [secret] = documents(KUBERNETES / "secret.example.yaml")
    scaled = keda["ScaledObject", "payhooks-worker"]
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis-sentinel"
    assert set(trigger["metadata"]) <= KEDA_SENTINEL_METADATA
    assert trigger["metadata"]["listName"] == f"rq:queue:{data['PAYHOOKS_QUEUE']}"
    # The worker's own environment (the ConfigMap) names the Sentinels and the master.
    assert trigger["metadata"]["addressesFromEnv"] == "REDIS_SENTINELS"
    assert trigger["metadata"]["sentinelMasterFromEnv"] == "REDIS_MASTER_NAME"
    assert {"REDIS_SENTINELS", "REDIS_MASTER_NAME"} <= set(data)
    assert trigger["metadata"]["enableTLS"] == "true"  # as the rediss+sentinel:// URL
    assert trigger["authenticationRef"]["name"] == "payhooks-redis"
    references = keda["TriggerAuthentication", "payhooks-redis"]["spec"]["secretTargetRef"]
    assert {r["parameter"] for r in references} <= KEDA_SENTINEL_AUTH
    assert {r["parameter"]: r["key"] for r in references} == {
        "password": "REDIS_PASSWORD",
        "sentinelPassword": "REDIS_SENTINEL_PASSWORD",
    }
    for reference in references:
        assert reference["name"] == secret["metadata"]["name"]
        assert reference["key"] in secret["stringData"]


def test_keda_objects_validate_and_watch_the_rq_queue_on_the_one_redis_address() -> None:
    import jsonschema

    schema = json.loads((KUBERNETES / "keda" / "keda.schema.json").read_text())
    keda = documents(KUBERNETES / "keda" / "keda.yaml")
    for document in keda:
        jsonschema.validate(document, schema)
    [scaled] = [d for d in keda if d["kind"] == "ScaledObject"]
    [auth] = [d for d in keda if d["kind"] == "TriggerAuthentication"]
    [configmap] = documents(KUBERNETES / "base" / "configmap.yaml")
    [secret] = documents(KUBERNETES / "secret.example.yaml")
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"  # KEDA's redis-lists scaler
    assert trigger["metadata"]["listName"] == f"rq:queue:{configmap['data']['PAYHOOKS_QUEUE']}"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "payhooks-worker"
    # The address payhooks uses, read from the worker's environment; the password from
    # payhooks' own Secret: nothing about Redis is written twice.
    assert trigger["metadata"]["addressFromEnv"] == "REDIS_ADDRESS"
    assert "REDIS_ADDRESS" in configmap["data"]
    [password] = auth["spec"]["secretTargetRef"]
    assert (password["name"], password["key"]) == (secret["metadata"]["name"], "REDIS_PASSWORD")
    assert password["key"] in secret["stringData"]
    address = configmap["data"]["REDIS_ADDRESS"]
    written = [
        p
        for p in KUBERNETES.rglob("*.yaml")
        if address in p.read_text() or address.split(":")[0] in p.read_text()
    ]
    assert written == [KUBERNETES / "base" / "configmap.yaml"]


def test_kubernetes_config_holds_every_setting_once() -> None:
    [configmap] = documents(KUBERNETES / "base" / "configmap.yaml")
    [secret] = documents(KUBERNETES / "secret.example.yaml")
    settings, secrets = settings_variables(), secret_variables()
    in_configmap, in_secret = set(configmap["data"]), set(secret["stringData"])
    assert in_configmap & in_secret == set()
    # REDIS_URL is built in each Deployment from REDIS_ADDRESS (the ConfigMap), which
    # KEDA reads too.
    assert (in_configmap | in_secret) - {"REDIS_ADDRESS"} == settings - {"REDIS_URL"}
    assert secrets - {"REDIS_URL"} <= in_secret
    deployments = [d for d in kustomize(KUBERNETES) if d["kind"] == "Deployment"]
    assert len(deployments) == 3  # receiver, worker, scheduler
    for deployment in deployments:
        [container] = containers(deployment)
        env = {e["name"]: e["value"] for e in container["env"]}
        assert "$(REDIS_ADDRESS)" in env["REDIS_URL"]
    # The README's list of what the Secret holds is the Secret's.
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Many hosts: Kubernetes") :]
    section = section[: section.index("\n### ", 1)]
    listed = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section[section.index("Secret `payhooks`") :]))
    assert in_secret <= listed


def test_kubernetes_shutdown_and_security_settings() -> None:
    rendered = by_identity(kustomize(KUBERNETES))
    configmap = rendered["ConfigMap", "payhooks"]
    job_timeout = int(configmap["data"]["JOB_TIMEOUT_SECONDS"])
    worker = rendered["Deployment", "payhooks-worker"]
    receiver = rendered["Deployment", "payhooks-receiver"]
    scheduler = rendered["Deployment", "payhooks-scheduler"]
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > job_timeout
    assert receiver["spec"]["replicas"] >= 2
    assert scheduler["spec"]["replicas"] >= 1
    for deployment in (worker, receiver, scheduler):
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
    kinds = {kind for kind, name in rendered if name == "payhooks-receiver"}
    assert kinds == {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"}


def test_read_only_containers_have_a_writable_tmp_for_serve_workers() -> None:
    """`serve --workers N` makes its Prometheus multiprocess directory with
    tempfile.mkdtemp, under /tmp (the image sets no TMPDIR): a read-only root filesystem
    needs a tmpfs (compose) or an emptyDir (Kubernetes) there, or the receiver cannot start."""
    assert "TMPDIR" not in (ROOT / "Dockerfile").read_text()
    services = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())["services"]
    for name in ("receiver", "worker", "scheduler", "rq-dashboard"):
        service = services[name]
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"], name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
    receiver = by_identity(kustomize(KUBERNETES))["Deployment", "payhooks-receiver"]
    pod = receiver["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert "emptyDir" in volume


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
        example = str(DEPLOY / "compose" / ".env.example")
        command = [str(docker), "compose", "--env-file", example, "-f", str(compose), "config"]
        command.append("--quiet")
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
    # A password from .env, which payhooks (env_file) and the health check use too.
    assert redis_command[redis_command.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")
    assert services["redis"]["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD:?")
    assert yaml.safe_load(compose.read_text())["x-payhooks"]["env_file"] == ".env"
    assert "${REDIS_PASSWORD" in services["rq-dashboard"]["environment"]["RQ_DASHBOARD_REDIS_URL"]
    assert "healthcheck" in services["redis"]
    assert all(p.startswith("127.0.0.1:") for p in services["rq-dashboard"]["ports"])
    grace = int(services["worker"]["stop_grace_period"].rstrip("s"))
    assert grace > 300  # longer than JOB_TIMEOUT_SECONDS


def test_readme_compose_and_kubernetes_agree_on_commands_and_tags() -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    readme = (ROOT / "README.md").read_text()
    compose_text = (DEPLOY / "compose" / "compose.yaml").read_text()
    compose = yaml.safe_load(compose_text)
    [image] = yaml.safe_load((KUBERNETES / "base" / "kustomization.yaml").read_text())["images"]
    assert image["newTag"] == version
    assert compose["x-payhooks"]["image"].endswith(f":-payhooks:{version}}}")
    assert compose["services"]["rq-dashboard"]["image"].endswith(
        f":-payhooks-dashboard:{version}}}"
    )
    assert f"docker build -t payhooks:{version} ." in readme
    assert f"docker build --target dashboard -t payhooks-dashboard:{version} ." in readme
    # The compose file's own instructions are the README's.
    [up] = re.findall(r"^#\s+(docker compose up .*)$", compose_text, re.MULTILINE)
    assert up in readme
    for service in ("receiver", "worker", "scheduler"):
        command = " ".join(compose["services"][service]["command"])
        assert f"payhooks {command.split()[0]}" in readme
    for deployment in kustomize(KUBERNETES):
        for container in containers(deployment):
            assert container["image"].endswith(f":{version}")
            assert container["args"][0] in {"serve", "worker", "scheduler"}
            assert container["args"] in (
                compose["services"]["receiver"]["command"],
                compose["services"]["worker"]["command"],
                compose["services"]["scheduler"]["command"],
            )


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
    settings: Settings,
    redis: object,
    sandbox_state: SandboxState,
    run_worker: object,
    gocardless_state: Any,
) -> None:
    import asyncio

    from aiohttp.test_utils import TestServer

    from tests.support.delivery import deliver

    deliver(
        settings,
        "stripe",
        samples.event(
            "payment_intent.succeeded", samples.payment_intent(invoice_id=42, amount=Decimal(100))
        ),
    )
    run_worker()  # type: ignore[operator]
    # A reconcile scan of GoCardless's stand-in, which lists one payment event no webhook
    # brought: its last success and its events are exported.
    from datetime import UTC, datetime, timedelta

    gocardless_state.events.append(
        {
            "id": "EV0000000001",
            "created_at": datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "resource_type": "payments",
            "action": "confirmed",
            "details": {"origin": "gocardless", "cause": "payment_confirmed"},
            "metadata": {},
            "links": {"payment": "PM0000000001"},
        }
    )

    from payhooks.cli.reconcile import reconcile_providers
    from payhooks.providers.kit.listing import Window
    from payhooks.storage import redis_connect

    now = datetime.now(tz=UTC)
    with redis_connect.sync_client(settings) as client:
        window = Window(now - timedelta(hours=1), now)
        assert reconcile_providers(settings, client, window, ["gocardless"])[0]["result"] == "ok"

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


#: A PromQL aggregation and the opening parenthesis of its argument (the prefix forms).
AGGREGATION = re.compile(r"\b(sum|max|min|avg|count)\s*(?:(?:by|without)\s*\([^)]*\)\s*)?\(")


def innermost_aggregations(expr: str) -> list[tuple[str, str | None]]:
    """Each payhooks series in a PromQL expression, with the aggregation nearest around it
    (the one that combines the replicas' series)."""
    spans = []
    for found in AGGREGATION.finditer(expr):
        depth, start = 0, found.end() - 1
        for end in range(start, len(expr)):
            depth += {"(": 1, ")": -1}.get(expr[end], 0)
            if depth == 0:
                break
        spans.append((start, end, found.group(1)))
    found_metrics = []
    for metric in re.finditer(r"\bpayhooks_[a-z_]+", expr):
        around = [span for span in spans if span[0] < metric.start() < span[1]]
        found_metrics.append((metric.group(0), max(around)[2] if around else None))
    return found_metrics


def metrics_table() -> dict[str, tuple[str, str]]:
    """The README's metrics table: metric -> (per replica or cluster-wide, aggregation)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("| metric | what | across replicas |") :]
    table = {}
    for row in section[: section.index("\n\n")].splitlines()[2:]:
        names, _, across = row.strip("|").split(" | ")
        kind, _, aggregation = across.partition(": ")
        for name in re.findall(r"`(payhooks_[a-z_]+)", names):
            table[name] = (kind, re.findall(r"`([a-z]+)`", aggregation)[0])
    return table


def test_metrics_table_says_how_to_aggregate_and_the_dashboard_and_alerts_do_so(
    settings: Settings, redis: object
) -> None:
    import asyncio

    import prometheus_client

    import payhooks.providers.stripe.receiver  # noqa: F401 (registers its counter)
    import service.metrics  # noqa: F401
    from payhooks.storage import redis_connect
    from service import cluster_metrics

    async def from_redis() -> str:
        client = redis_connect.async_client(settings)
        try:
            return (await cluster_metrics.render(client, settings.queue_name)).decode()
        finally:
            await client.aclose()

    def exposed(types: list[tuple[str, str]]) -> set[str]:
        return {f"{name}_total" if kind == "counter" else name for name, kind in types}

    # The exposition's TYPE lines name counters as scraped (with _total).
    read_from_redis = set(re.findall(r"^# TYPE (\S+) ", asyncio.run(from_redis()), re.MULTILINE))
    own = exposed(
        [
            (metric.name, metric.type)
            for metric in prometheus_client.REGISTRY.collect()
            if metric.name.startswith("payhooks_")
        ]
    )
    table = metrics_table()
    # Every metric is in the table, classified as what it is.
    assert set(table) == read_from_redis | own
    assert {name for name, (kind, _) in table.items() if kind == "cluster-wide"} == read_from_redis
    for name, (kind, aggregation) in table.items():
        assert aggregation == ("max" if kind == "cluster-wide" else aggregation), name
        assert kind == "cluster-wide" or aggregation in {"sum", "min"}, name
    # The check below catches what it is for: a cluster-wide series summed.
    assert innermost_aggregations("sum(rate(payhooks_jobs_total[5m]))") == [
        ("payhooks_jobs_total", "sum")
    ]

    expressions = []
    dashboard = json.loads((DEPLOY / "monitoring" / "grafana-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        expressions += [(panel["title"], t["expr"]) for t in panel["targets"]]
    for group in yaml.safe_load((DEPLOY / "monitoring" / "alerts.yaml").read_text())["groups"]:
        expressions += [(rule["alert"], rule["expr"]) for rule in group["rules"]]
    wrong = []
    for title, expr in expressions:
        for series, aggregation in innermost_aggregations(expr):
            name = series if series in table else re.sub(r"_(bucket|sum|count)$", "", series)
            if aggregation != table[name][1]:
                wrong.append(f"{title}: {series} under {aggregation}, not {table[name][1]}")
    assert wrong == []


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_installs_as_the_dockerfile_does_and_runs_both_roles(
    tmp_path: Path, settings: Settings, sandbox_state: SandboxState
) -> None:
    app = tmp_path / "app"
    sync = dockerfile_sync_command("/opt/payhooks")
    subprocess.run(
        [str(UV), *sync, "--python", sys.executable],
        check=True,
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(app), "UV_PYTHON_DOWNLOADS": "never"},
    )
    installed = installed_versions(app)
    locked = locked_versions()
    # What the image runs is what the lock holds, and what scripts/test ran against here.
    assert {name: locked[name] for name in installed if name != "payhooks"} == {
        name: version for name, version in installed.items() if name != "payhooks"
    }
    here = installed_versions(Path(sys.prefix))
    assert {name: here[name] for name in installed} == installed
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
