"""One `/metrics` for a gateway running as several worker processes (``--workers N``).

Each worker renders its own registry (`gateway.metrics`); the supervisor reads them all
(`gateway.workers`) and this module adds them up, sample by sample (same name, same labels):

* counters and histograms are summed, and a worker that exits leaves its last values
  behind (`retire`), so a total never goes backwards when a worker dies and another
  takes its place (only what it counted after the last read is lost);
* gauges are summed over the workers running now (connections, queued bytes, viewers per
  stream), except the ``_max`` ones, which take the largest, and the ones that say
  whether the process is fit (`ALL_OF`), which are 1 only when they are for every worker:
  a balancer asking `/readyz` reaches any of them;
* ``_created`` samples (when a process made the series) mean nothing summed and are left out.

Pure: text in, text out; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

Key = tuple[str, tuple[tuple[str, str], ...]]
KEPT = ("counter", "histogram")  # what a worker that exits leaves behind
ALL_OF = frozenset({"tailgate_gateway_ready", "tailgate_gateway_reader_connected"})


@dataclass
class _Family:
    name: str
    type: str
    documentation: str
    samples: dict[Key, float] = field(default_factory=dict)

    def add(self, key: Key, value: float) -> None:
        if self.type == "gauge" and self.name.endswith("_max"):
            self.samples[key] = max(value, self.samples.get(key, value))
        elif self.name in ALL_OF:
            self.samples[key] = min(value, self.samples.get(key, value))
        else:
            self.samples[key] = self.samples.get(key, 0.0) + value

    def metric(self) -> Metric:
        out = Metric(self.name, self.documentation, self.type)
        for (sample, labels), value in self.samples.items():
            out.add_sample(sample, dict(labels), value)
        return out


def _parse(text: str) -> Iterator[tuple[_Family, Key, float]]:
    for family in text_string_to_metric_families(text):
        meta = _Family(family.name, family.type, family.documentation)
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                yield meta, (sample.name, tuple(sorted(sample.labels.items()))), sample.value


class MetricsSum:
    """The sum over a set of workers' expositions, remembering the counters of those gone."""

    def __init__(self) -> None:
        self.retired: dict[str, _Family] = {}

    def retire(self, text: str) -> None:
        """A worker exited; `text` was its last exposition: keep its counters and histograms."""
        for meta, key, value in _parse(text):
            if meta.type in KEPT:
                self.retired.setdefault(meta.name, _Family(meta.name, meta.type, meta.documentation)).add(key, value)

    def total(self, texts: Iterable[str], extra: Iterable[Metric] = ()) -> bytes:
        """The Prometheus text exposition of the running workers' `texts` summed, plus what
        retired workers left, plus `extra` families (the supervisor's own)."""
        families: dict[str, _Family] = {
            name: _Family(name, old.type, old.documentation, dict(old.samples)) for name, old in self.retired.items()
        }
        for text in texts:
            for meta, key, value in _parse(text):
                families.setdefault(meta.name, meta).add(key, value)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Fixed([f.metric() for f in families.values()] + list(extra)))
        return generate_latest(registry)


class _Fixed(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self.metrics)
