"""The KubernetesExecutor pod template for land_shard is a valid pod the executor can use, sized from the
landing memory benchmark."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "deploy" / "kubernetes" / "land-shard-pod-template.yaml"


def _mib(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return float(number) * (1024 if unit == "Gi" else 1)


def test_the_land_shard_pod_template_fits_the_measured_peak() -> None:
    pod = yaml.safe_load(TEMPLATE.read_text())
    assert pod["kind"] == "Pod" and pod["apiVersion"] == "v1"
    (base,) = [c for c in pod["spec"]["containers"] if c["name"] == "base"]
    resources = base["resources"]
    # The landing task's peak RSS with the default batch limits (docs/performance.md): under the request
    figures = re.findall(
        r"peak RSS landing a 1,000,000-record backlog \| (\d+) MiB", (REPO / "docs/performance.md").read_text()
    )
    peak = max(int(m) for m in figures)
    assert peak >= 800
    assert _mib(resources["requests"]["memory"]) >= peak
    assert _mib(resources["limits"]["memory"]) > _mib(resources["requests"]["memory"])
    assert {e["name"]: e["value"] for e in base["env"]}["NUMBA_CACHE_DIR"]
