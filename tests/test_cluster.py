"""Two replicas behind the real nginx, with the real Prometheus scraping them (make cluster's
parts): a live stream through nginx spreads its segments over both replicas, and when one
replica is killed in the middle, the stream still ends with every frame, identical to a
single server's render."""

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from lipsync.client import LipsyncClient
from lipsync_protocol import framing, waiting
from lipsync_protocol.keys import ADMIN
from lipsync_server.calibration import voice
from lipsync_server.demo import synthetic
from lipsync_server.launcher.cluster import Cluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "perf"))
import failover  # noqa: E402  (the drill `make failover` reports on)
import overload  # noqa: E402  (`make overload`: one request of its open loop)

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "triton-lipsync.json"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(server, tmp_path_factory):
    """`server`: the session's build of the repository (it is what the replicas serve)."""
    with Cluster.on_free_ports(server.repository, tmp_path_factory.mktemp("cluster")) as running:
        yield running


def test_nginx_passes_grpc_and_http_and_the_admin_key_is_still_needed(cluster):
    audio = voice.speech(1.0, framing.SAMPLE_RATE, seed=1)
    for protocol, url in (("grpc", cluster.grpc_url), ("http", cluster.http_url)):
        client = LipsyncClient(url, protocol=protocol)
        client.wait_until_ready(30)
        assert len(client.render(audio, 16000, "demo")) == framing.frame_count(len(audio))
        with pytest.raises(InferenceServerException) as error:
            LipsyncClient(url, protocol=protocol, admin_key="not-the-key").avatars()
        assert "restricted" in error.value.message() and "lipsync-admin-key" in error.value.message()


def wait_for(condition, timeout: float = 10.0) -> bool:
    try:
        return waiting.until(condition, timeout, "the replicas' change")
    except TimeoutError:
        return False


def test_a_draining_replica_leaves_the_rotation_and_comes_back_when_ready(cluster):
    """A draining Triton still accepts connections and answers /v2/health/ready: nginx alone
    would keep sending it requests. The cluster's readiness check takes it out."""
    replica = cluster.replicas[0]
    replica.drain()
    assert wait_for(lambda: cluster.up == [False, True]), cluster.up
    audio = voice.speech(1.0, framing.SAMPLE_RATE, seed=2)
    client = LipsyncClient(cluster.grpc_url)
    for _ in range(4):  # round robin would have sent two of these to the drained replica
        assert len(client.render(audio, 16000, "demo")) == framing.frame_count(len(audio))
    admin = httpclient.InferenceServerClient(f"{replica.host}:{replica.http_port}")
    for ensemble in ("lipsync", "lipsync_faces"):
        admin.load_model(ensemble, headers=ADMIN.headers(replica.admin_key, "http"))
    assert wait_for(lambda: cluster.up == [True, True]), cluster.up
    assert [pod for _, pod, _ in cluster.changes] == ["replica-1", "replica-1"]


def test_overload_shows_in_prometheus_as_busy_refusals_and_expected_wait(cluster):
    """Bursts of requests that accept 0.3 s of waiting, through nginx, until the cluster's
    Prometheus has seen both replicas busy: every busy refusal a client got is counted there,
    the recording rules and the autoscaler's metrics have their series, and every query of the
    dashboard answers."""
    client = LipsyncClient(cluster.grpc_url)
    for _ in range(2):  # both replicas have measured their rate: the wait bound applies
        client.render(overload.AUDIO, framing.SAMPLE_RATE, "demo", synthetic.BENCHMARK_VERSION)
    refused = 0

    def burst_until_seen() -> bool:
        nonlocal refused
        with ThreadPoolExecutor(12) as pool:
            outcomes = list(pool.map(lambda _: overload.one(client, 0.3), range(12)))
        assert not [o for o in outcomes if o[0] == "lost"], outcomes
        refused += sum(o[0] == "rejected" and "server busy" in o[2] for o in outcomes)
        waits = cluster.prometheus.by_pod("max_over_time(lipsync_expected_wait_seconds[10m])")
        return refused > 0 and len(waits) == 2 and all(wait > 0 for wait in waits.values())

    waiting.until(burst_until_seen, timeout_s=300, what="both replicas' expected wait in Prometheus", interval_s=0)
    counted = waiting.until(
        lambda: cluster.prometheus.query('sum(lipsync_requests_refused_total{reason="busy"}) == ' + str(refused)),
        timeout_s=30,
        what=f"the {refused} busy refusals in Prometheus",
    )
    assert counted
    for recorded in ("lipsync:expected_wait_seconds:avg1m", "lipsync:busy_refusals:rate1m"):
        pods = waiting.until(lambda name=recorded: cluster.prometheus.by_pod(name), 30, recorded)
        assert set(pods) == {"replica-1", "replica-2"}, pods
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            cluster.prometheus.query(target["expr"].replace("$namespace", "local"))  # raises if it fails
    assert cluster.prometheus.query('lipsync:refusals_by_reason:rate1m{namespace="local", reason="busy"}')


def test_a_replica_killed_mid_stream_loses_no_frame(cluster):
    audio = voice.speech(8.0, framing.SAMPLE_RATE, seed=5)
    result = failover.drill(cluster, audio, victim=1)
    assert result.lost == 0, result
    # Both replicas served segments (stateless: no stickiness needed) before one was killed.
    assert set(result.segments_per_replica) == {"replica-1", "replica-2"}, result
    # nginx was told, from the replica's readiness, within a few of the checker's polls.
    assert result.taken_out_after_s is not None and result.taken_out_after_s < 5.0, result
    view = failover.prometheus_view(cluster)
    assert set(view["lipsync_requests"]) == {"replica-1", "replica-2"}, view
    assert all(count > 0 for count in view["lipsync_requests"].values()), view
