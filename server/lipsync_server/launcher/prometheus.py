"""Prometheus scraping each replica's Triton metrics every second, with the autoscaling rules the
Helm chart ships (deploy/prometheus/rules.yml), loopback only. Replicas are labelled as pods
(`namespace="local"`, `pod="replica-N"`), so the rules run unchanged."""

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from lipsync_protocol import waiting

from . import processes

RULES = Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "rules.yml"


def executable() -> str:
    found = shutil.which("prometheus")
    if not found:
        raise RuntimeError("prometheus not found: `make tools` installs it (apt-get install prometheus)")
    return found


def config(targets: dict[str, str], rules: Path) -> str:
    """prometheus.yml (JSON is YAML) scraping `targets` (pod name -> host:port)."""
    return json.dumps(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)] if rules.exists() else [],  # a source checkout has them
            "scrape_configs": [
                {
                    "job_name": "triton",
                    "static_configs": [
                        {"targets": [address], "labels": {"namespace": "local", "pod": pod}}
                        for pod, address in targets.items()
                    ],
                }
            ],
        },
        indent=2,
    )


def query(url: str, expression: str) -> list[dict]:
    """An instant query's result vector: [{"metric": {...}, "value": [time, "number"]}, ...]."""
    address = f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    try:
        with urllib.request.urlopen(address, timeout=10) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:  # a query Prometheus cannot parse: 400 with the reason
        body = json.load(error)
    if body.get("status") != "success":
        raise RuntimeError(f"prometheus query {expression!r} failed: {body.get('error', body)}")
    return body["data"]["result"]


def by_pod(url: str, expression: str) -> dict[str, float]:
    """{pod: value} of an instant query."""
    return {row["metric"].get("pod", ""): float(row["value"][1]) for row in query(url, expression)}


class Prometheus:
    def __init__(self, work: Path, host: str, port: int):
        self.work, self.host, self.port = work, host, port
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, targets: dict[str, str]) -> None:
        data = self.work / "prometheus-data"
        shutil.rmtree(data, ignore_errors=True)  # this run's series only (the folder is ours alone)
        path = self.work / "prometheus.yml"
        path.write_text(config(targets, RULES))
        log = open(self.work / "prometheus.log", "ab")
        self.process = subprocess.Popen(
            [
                executable(),
                f"--config.file={path}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address={self.host}:{self.port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def query(self, expression: str) -> list[dict]:
        return query(self.url, expression)

    def by_pod(self, expression: str) -> dict[str, float]:
        return by_pod(self.url, expression)

    def stop(self) -> None:
        processes.stop(self.process)

    def _wait_ready(self, timeout: float = 30.0) -> None:
        ready = f"{self.url}/-/ready"
        waiting.until(lambda: processes.answering(self.process, ready), timeout, f"prometheus ready ({self.work})", 0.2)
