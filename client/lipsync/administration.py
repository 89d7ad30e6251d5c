"""A server's avatars, health and statistics: the administrator's calls (keyed), read through a
Transport."""

import json
from dataclasses import dataclass, field

from tritonclient.utils import InferenceServerException

from lipsync_protocol import avatar_names, waiting
from lipsync_protocol.ensemble import ENSEMBLE

from .transport import Transport


@dataclass
class Avatar:
    name: str
    versions: dict[int, str] = field(default_factory=dict)  # version -> state ("READY", "UNAVAILABLE", ...)
    reasons: dict[int, str] = field(default_factory=dict)  # version -> why its last load failed
    # version -> the quality gates' figures of a version `lipsync-server avatar create` made
    # (psnr_db, sync_r, real_sync_r, failed); known while the avatar is loaded
    creation: dict[int, dict] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return any(state == "READY" for state in self.versions.values())


def is_ready(transport: Transport) -> bool:
    triton, headers = transport.triton, transport.headers
    try:
        return triton.is_server_ready(headers=headers) and triton.is_model_ready(ENSEMBLE, headers=headers)
    except (InferenceServerException, ConnectionError, OSError):
        return False


def wait_until_ready(transport: Transport, timeout_s: float) -> None:
    waiting.until(lambda: is_ready(transport), timeout_s, f"lip-sync server at {transport.url} ready", interval_s=0.5)


def health(transport: Transport) -> dict:
    return {
        "live": transport.triton.is_server_live(headers=transport.headers),
        "ready": is_ready(transport),
        "avatars": {a.name: a.versions for a in avatars(transport, figures=False)},
    }


def statistics(transport: Transport) -> dict[str, dict]:
    """Per model (and version): successful requests, executions, average queue and compute ms."""
    raw = transport.triton.get_inference_statistics(headers=transport.admin_headers, **transport.as_json())
    report = {}
    for entry in raw.get("model_stats", []):
        stats = entry.get("inference_stats", {})
        ok = int(stats.get("success", {}).get("count", 0))
        report[f"{entry['name']}/{entry['version']}"] = {
            "requests": ok,
            "failures": int(stats.get("fail", {}).get("count", 0)),
            "executions": int(entry.get("execution_count", 0)),
            "inferences": int(entry.get("inference_count", 0)),
            "avg_queue_ms": _mean_ms(stats.get("queue", {}), ok),
            "avg_compute_ms": _mean_ms(stats.get("compute_infer", {}), ok),
            "last_inference_ms": int(entry.get("last_inference", 0)),
        }
    return report


def avatars(transport: Transport, figures: bool = True) -> list[Avatar]:
    """Every avatar in the server's repository with its versions' states; `figures`: with the
    loaded ones' creation figures too (a config call per loaded avatar)."""
    index = transport.triton.get_model_repository_index(headers=transport.admin_headers, **transport.as_json())
    entries = index.get("models", index) if isinstance(index, dict) else index
    found: dict[str, Avatar] = {}
    for entry in entries:
        name = avatar_names.avatar_name(entry["name"])
        if name is None:
            continue
        item = found.setdefault(name, Avatar(name))
        if entry.get("version"):
            item.versions[int(entry["version"])] = entry.get("state", "UNKNOWN")
            if entry.get("reason") and entry.get("state") != "READY":
                item.reasons[int(entry["version"])] = entry["reason"]
    for item in found.values():
        if figures and item.ready:
            item.creation = _creation_reports(transport, item.name)
    return sorted(found.values(), key=lambda a: a.name)


def _creation_reports(transport: Transport, name: str) -> dict[int, dict]:
    """The loaded avatar model's config parameter "creation" (the server's repository writes
    it: JSON, version -> figures)."""
    try:
        config = transport.triton.get_model_config(
            avatar_names.model_name(name), headers=transport.admin_headers, **transport.as_json()
        )
    except InferenceServerException:  # unloaded since the index was read
        return {}
    config = config.get("config", config)
    text = config.get("parameters", {}).get("creation", {}).get("string_value")
    try:
        return {int(version): figures for version, figures in json.loads(text).items()} if text else {}
    except (ValueError, AttributeError):  # written by hand: shown as absent
        return {}


def load(transport: Transport, name: str) -> None:
    transport.triton.load_model(avatar_names.model_name(name), headers=transport.admin_headers)


def unload(transport: Transport, name: str) -> None:
    transport.triton.unload_model(avatar_names.model_name(name), headers=transport.admin_headers)


def _mean_ms(duration: dict, count: int) -> float:
    return round(int(duration.get("ns", 0)) / 1e6 / count, 3) if count else 0.0
