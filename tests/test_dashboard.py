"""The Grafana dashboard as code (deploy/grafana/triton-lipsync.json): every query parses with
promtool, and every metric it names is one the rules record, the server serves or the sessions'
processes (the web gateway, the agent) serve."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from lipsync.client import LipsyncClient
from lipsync.session_metrics import SessionMetrics

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "triton-lipsync.json"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
# Grafana's template variables, as a user's choice fills them in.
VARIABLES = {"$namespace": "default"}
METRIC = re.compile(r"\b(lipsync:[a-z0-9_:]+|lipsync_[a-z0-9_]+|nv_[a-z0-9_]+)\b")


def queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    found += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    for name, value in VARIABLES.items():
        found = [query.replace(name, value) for query in found]
    return found


def recorded() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def test_every_query_parses_with_promtool(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make test` installs Debian's prometheus package (make tools)"
    panel_queries = [q for q in queries() if not q.startswith("label_values(")]  # Grafana's, not PromQL
    rules = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"q{i}", "expr": q} for i, q in enumerate(panel_queries)]}
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(panel_queries)} rules found" in checked.stdout


def test_every_metric_it_names_exists(server, grpc_url):
    LipsyncClient(grpc_url).wait_until_ready()
    sessions = SessionMetrics(None).registry.collect()  # the web gateway's and the agent's
    names = {s.name for s in server.metrics().samples} | {s.name for family in sessions for s in family.samples}
    served = names | {re.sub(r"_(bucket|count|sum)$", "", name) for name in names}  # a histogram's family
    named = {name for query in queries() for name in METRIC.findall(query)}
    histograms = {name for name in named if name.endswith("_bucket")}
    unknown = {name for name in named - histograms if name not in recorded() | served}
    unknown |= {name for name in histograms if name.removesuffix("_bucket") not in served}
    assert not unknown, unknown
    assert recorded() <= named  # every recorded series is on the dashboard
