"""The Kubernetes deployment, checked with real tools from the registries (no cluster here):
the Helm chart renders with Helm's own Go SDK (helm-python-sdk, Helm v4) for the default, GPU
and CPU values and passes `helm lint --strict`; every rendered Kubernetes object validates
against the Kubernetes schemas (kubernetes-validate --strict); broken values fail; the
autoscaling metric's Prometheus rules pass promtool's unit tests (Debian's prometheus)."""

import shutil
import subprocess
import sys
from pathlib import Path

import helm_python as helm
import pytest
import yaml

from lipsync_protocol.keys import ADMIN
from lipsync_server import cli

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "triton-lipsync"
PROMETHEUS = ROOT / "deploy" / "prometheus"
KEYED = {"keys": {"existingSecret": "lipsync-keys"}}
PROFILES = {
    "default": {},
    "gpu": yaml.safe_load((CHART / "values.yaml").read_text()),
    "cpu": yaml.safe_load((CHART / "values-cpu.yaml").read_text()),
    "ingress": {"ingress": {"enabled": True, "host": "lipsync.example.com", "tlsSecret": "lipsync-tls"}},
    "creation": {
        "avatarCreation": {
            "jobs": [
                {"name": "alice_2", "video": "phone/alice.mp4", "width": 32, "steps": 2000},
                {"name": "bob", "video": "bob.mov"},
            ]
        }
    },
}
BUILT_IN = {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ConfigMap"}
ADDED = {"ingress": {"Ingress"}, "creation": {"Job"}}


def render(values: dict) -> list[dict]:
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values, name="lipsync", namespace="serving")
    return [doc for text in manifests.values() for doc in yaml.safe_load_all(text) if doc]


def validate(manifest: Path) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", str(manifest)]
    return subprocess.run(command, capture_output=True, text=True)


def merged(*layers: dict) -> dict:
    result: dict = {}
    for layer in layers:
        for key, value in layer.items():
            result[key] = merged(result.get(key, {}), value) if isinstance(value, dict) else value
    return result


@pytest.mark.parametrize("profile", list(PROFILES))
def test_the_chart_lints_strictly(profile):
    report = helm.lint(str(CHART), merged(PROFILES[profile], KEYED), strict=True)
    assert report["errors"] == [], report
    assert all(m["severity"] < 2 for m in report["messages"]), report  # only "info"


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_rendered_object_is_valid_kubernetes(profile, tmp_path):
    documents = render(merged(PROFILES[profile], KEYED))
    expected = BUILT_IN | ADDED.get(profile, set())
    assert {d["kind"] for d in documents} == expected  # no ServiceMonitor without the operator
    for index, document in enumerate(documents):
        path = tmp_path / f"{index}-{document['kind']}.yaml"
        path.write_text(yaml.safe_dump(document))
        checked = validate(path)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_deployment_serves_triton_with_its_probes_key_and_graceful_stop():
    (deployment,) = [d for d in render(KEYED) if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # Ready when the pipeline is (the ensemble), not merely the server process.
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/models/lipsync/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/models/lipsync/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600  # the pinned set's plans on a new GPU
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 1000
    env = {e["name"]: e for e in container["env"]}
    assert env["LIPSYNC_ADMIN_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "lipsync-keys", "key": "admin"}
    assert env["LIPSYNC_INFERENCE_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "lipsync-keys", "key": "inference"}
    assert pod["terminationGracePeriodSeconds"] > 60  # the entrypoint's drain (30 s) and Triton's exit (30 s)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}


def test_the_cpu_profile_asks_for_no_gpu_and_tells_the_entrypoint():
    (deployment,) = [d for d in render(merged(PROFILES["cpu"], KEYED)) if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert {e["name"]: e.get("value") for e in container["env"]}["LIPSYNC_PROFILE"] == "cpu"


def test_object_storage_replaces_the_volume():
    values = merged(KEYED, {"modelRepository": {"objectStorage": {"url": "s3://bucket/models"}}})
    (deployment,) = [d for d in render(values) if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["dshm"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["LIPSYNC_MODEL_REPOSITORY"] == "s3://bucket/models"


def test_the_ingress_balances_grpc_requests_over_tls():
    (ingress,) = [d for d in render(merged(KEYED, PROFILES["ingress"])) if d["kind"] == "Ingress"]
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    assert ingress["spec"]["tls"] == [{"hosts": ["lipsync.example.com"], "secretName": "lipsync-tls"}]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["port"] == {"name": "grpc"}
    assert not [d for d in render(KEYED) if d["kind"] == "Ingress"]  # off unless asked for


def job(entry: dict) -> dict:
    return {"avatarCreation": {"jobs": [entry]}}


def test_avatar_creation_jobs_run_the_create_command_on_a_gpu_with_both_claims(monkeypatch):
    jobs = [d for d in render(merged(PROFILES["creation"], KEYED)) if d["kind"] == "Job"]
    assert [j["metadata"]["name"] for j in jobs] == [
        "lipsync-triton-lipsync-create-alice-2",
        "lipsync-triton-lipsync-create-bob",
    ]
    assert not [d for d in render(KEYED) if d["kind"] == "Job"]  # none unless asked for
    alice, bob = (j["spec"]["template"]["spec"] for j in jobs)
    (container,) = alice["containers"]
    assert alice["restartPolicy"] == "Never" and alice["securityContext"]["runAsUser"] == 1000
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in alice["volumes"]}
    assert claims[mounts["/models"]] == "lipsync-models" and claims[mounts["/videos"]] == "lipsync-videos"
    env = {e["name"]: e for e in container["env"]}
    assert env[ADMIN.env]["valueFrom"]["secretKeyRef"] == {"name": "lipsync-keys", "key": "admin"}
    # The arguments are the server command's own: its parser reads them as this request.
    requests = []
    monkeypatch.setattr(cli, "_create", lambda args: requests.append(args) or 1)
    for spec in (alice, bob):
        cli.main(spec["containers"][0]["args"])
    first, second = requests
    assert (first.name, str(first.video), str(first.work)) == (
        "alice_2",
        "/videos/phone/alice.mp4",
        "/videos/work/alice_2",
    )
    assert (str(first.repository), first.width, first.steps, first.device) == ("/models", 32, 2000, "cuda")
    assert first.load and first.url == "lipsync-triton-lipsync:8001" and not first.ignore_gates
    assert (second.width, second.steps, str(second.work)) == (32, 1000, "/videos/work/bob")


def test_the_autoscaler_scales_on_the_expected_wait_and_busy_refusals():
    documents = render(KEYED)
    (hpa,) = [d for d in documents if d["kind"] == "HorizontalPodAutoscaler"]
    targets = {m["pods"]["metric"]["name"]: m["pods"]["target"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    assert targets == {
        "lipsync_expected_wait_seconds": {"type": "AverageValue", "averageValue": "250m"},
        "lipsync_busy_refusals_per_second": {"type": "AverageValue", "averageValue": "100m"},
    }
    (rules,) = [d for d in documents if d["kind"] == "ConfigMap"]
    served = {rule["name"]["as"]: rule for rule in yaml.safe_load(rules["data"]["config.yaml"])["rules"]}
    assert set(served) == set(targets)


@pytest.mark.parametrize(
    ("metric", "recorded"),
    [
        ("lipsync_expected_wait_seconds", "lipsync:expected_wait_seconds:avg1m"),
        ("lipsync_busy_refusals_per_second", "lipsync:busy_refusals:rate1m"),
    ],
)
def test_the_adapter_computes_what_the_tested_recording_rules_compute(metric, recorded):
    """The adapter's query, with its placeholders as it fills them for a namespace's pods, is the
    recording rule's expression that promtool tests (rules_test.yml)."""
    (rules,) = [d for d in render(KEYED) if d["kind"] == "ConfigMap"]
    (rule,) = [r for r in yaml.safe_load(rules["data"]["config.yaml"])["rules"] if r["name"]["as"] == metric]
    query = rule["metricsQuery"].replace("<<.GroupBy>>", "namespace, pod").replace(",<<.LabelMatchers>>", "")
    query = query.replace("{<<.LabelMatchers>>}", "")
    groups = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"]
    expressions = {r["record"]: r["expr"] for group in groups for r in group["rules"] if "record" in r}
    assert " ".join(query.split()) == " ".join(expressions[recorded].split())


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "keys.existingSecret: name a Secret"),  # no key: the chart refuses to render
        (merged(KEYED, {"replicas": "two"}), "at '/replicas': got string, want integer"),
        (merged(KEYED, {"image": {"repository": None}}), "missing property 'repository'"),
        (merged(KEYED, {"profile": {"name": "tpu"}}), "/profile/name"),
        (
            merged(KEYED, {"modelRepository": {"objectStorage": {"url": "ftp://x"}}}),
            "/modelRepository/objectStorage/url",
        ),
        (
            merged(KEYED, {"ingress": {"enabled": True, "host": "lipsync.example.com"}}),
            "ingress.tlsSecret: gRPC through ingress-nginx needs TLS",
        ),
        (merged(KEYED, job({"name": "Alice", "video": "a.mp4"})), "/avatarCreation/jobs/0/name"),
        (merged(KEYED, job({"name": "alice", "video": "../secrets/a.mp4"})), "/avatarCreation/jobs/0/video"),
        (merged(KEYED, job({"name": "alice", "video": "/etc/a.mp4"})), "/avatarCreation/jobs/0/video"),
        (merged(KEYED, job({"name": "alice", "video": "a.mp4", "width": 12})), "/avatarCreation/jobs/0/width"),
        (
            merged(
                KEYED,
                job({"name": "alice", "video": "a.mp4"}),
                {"modelRepository": {"objectStorage": {"url": "s3://b/m"}}},
            ),
            "avatarCreation.jobs: the Job writes the version into the repository's claim",
        ),
    ],
    ids=[
        "no-admin-key",
        "wrong-type",
        "missing-key",
        "unknown-profile",
        "unsupported-storage",
        "ingress-without-tls",
        "job-name",
        "job-video-outside",
        "job-video-absolute",
        "job-width",
        "job-object-storage",
    ],
)
def test_broken_values_fail_to_render(values, message):
    with pytest.raises(Exception, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        render(values)


def test_a_broken_manifest_fails_validation(tmp_path):
    (deployment,) = [d for d in render(KEYED) if d["kind"] == "Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eight thousand"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(deployment))
    checked = subprocess.run(
        [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", str(path)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode != 0


def test_the_autoscaling_rules_pass_promtool():
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make test` installs Debian's prometheus package (make tools)"
    checked = subprocess.run(
        [promtool, "test", "rules", "rules_test.yml"], cwd=PROMETHEUS, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_the_kserve_manifest_uses_the_image_entrypoint_and_the_key_secret():
    (service,) = yaml.safe_load_all((ROOT / "deploy" / "kserve" / "inferenceservice.yaml").read_text())
    model = service["spec"]["predictor"]["model"]
    assert service["kind"] == "InferenceService" and model["modelFormat"]["name"] == "triton"
    assert model["command"] == ["lipsync-server", "container"]
    env = {e["name"]: e for e in model["env"]}
    assert env["LIPSYNC_ADMIN_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "lipsync-keys", "key": "admin"}
    assert env["LIPSYNC_INFERENCE_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "lipsync-keys", "key": "inference"}
