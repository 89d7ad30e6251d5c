"""A server's Prometheus metrics as its metrics port serves them (Triton's and the pipeline's own,
backend/metrics.py), parsed by prometheus_client: what the benchmarks and the tests read back."""

import re
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


class Scrape:
    def __init__(self, text: str):
        # prometheus_client names every counter's samples `<name>_total`; Triton's counters
        # (nv_inference_count) are served, and stored by Prometheus, without the suffix.
        counters = set(re.findall(r"^# TYPE (\S+) counter$", text, re.M))
        self.samples = [
            Sample(family.name if family.name in counters else s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def matching(self, name: str, **labels: str) -> list[Sample]:
        """The samples of `name` whose labels include `labels`."""
        return [s for s in self.samples if s.name == name and labels.items() <= s.labels.items()]

    def total(self, name: str, **labels: str) -> float:
        """The sum over the matching samples (0 when there are none)."""
        return sum(s.value for s in self.matching(name, **labels))


def scrape(address: str, timeout: float = 10.0) -> Scrape:
    """`address`: host:port of a server's metrics port."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as response:
        return Scrape(response.read().decode())
