"""The FaaS metrics, aggregated in process and exported cumulatively (since the sandbox started).

- ``faas.invoke_duration`` (histogram, ms, by ``faas.trigger``): each invocation's duration;
- ``faas.init_duration`` (histogram, ms): the sandbox's start, process start to ``on_init``;
- ``faas.coldstarts``, ``faas.errors``, ``faas.timeouts`` (monotonic counters).

Each sandbox is one series (the resource carries ``service.instance.id`` and
``faas.instance``), so cumulative sums from many sandboxes add up in the backend.
"""

from __future__ import annotations

import threading
from bisect import bisect_left

from ort_apm.otlp import CUMULATIVE, key_values

TYPE_CHECKING = False  # typing's own constant would import typing
if TYPE_CHECKING:
    from typing import Any

# OpenTelemetry's default explicit bucket boundaries, made for milliseconds
BOUNDS = (
    0.0,
    5.0,
    10.0,
    25.0,
    50.0,
    75.0,
    100.0,
    250.0,
    500.0,
    750.0,
    1000.0,
    2500.0,
    5000.0,
    7500.0,
    10000.0,
)

HISTOGRAMS = {
    "faas.invoke_duration": ("ms", "Duration of the function's invocations"),
    "faas.init_duration": ("ms", "Duration of the sandbox's initialisation"),
}
COUNTERS = {
    "faas.coldstarts": ("{coldstart}", "Cold starts (invocations that started a sandbox)"),
    "faas.errors": ("{error}", "Invocations that failed"),
    "faas.timeouts": ("{timeout}", "Invocations that reached their deadline"),
}


class _Histogram:
    __slots__ = ("counts", "max", "min", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS) + 1)
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")

    def record(self, value: float) -> None:
        self.counts[bisect_left(BOUNDS, value)] += 1  # buckets are (previous bound, bound]
        self.sum += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)


class Metrics:
    def __init__(self, start_ns: int) -> None:
        self.start_ns = start_ns
        self._lock = threading.Lock()
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._histograms: dict[str, dict[tuple[tuple[str, str], ...], _Histogram]] = {
            name: {} for name in HISTOGRAMS
        }

    def add(self, name: str, value: int = 1) -> None:
        with self._lock:
            self._counters[name] += value

    def record(self, name: str, value: float, **attributes: str) -> None:
        key = tuple(sorted(attributes.items()))
        with self._lock:
            points = self._histograms[name]
            histogram = points.get(key)
            if histogram is None:
                histogram = points[key] = _Histogram()
            histogram.record(value)

    def invocation(
        self, duration_ms: float, trigger: str, coldstart: bool, error: bool, timeout: bool
    ) -> None:
        """One invocation's share of every metric, under one lock."""
        key = (("faas.trigger", trigger),)
        with self._lock:
            points = self._histograms["faas.invoke_duration"]
            histogram = points.get(key)
            if histogram is None:
                histogram = points[key] = _Histogram()
            histogram.record(duration_ms)
            counters = self._counters
            if coldstart:
                counters["faas.coldstarts"] += 1
            if timeout:
                counters["faas.timeouts"] += 1
            elif error:
                counters["faas.errors"] += 1

    def counter(self, name: str) -> int:
        with self._lock:
            return self._counters[name]

    def otlp(self, now_ns: int) -> list[dict[str, Any]]:
        """The metrics as OTLP JSON ``Metric`` objects, cumulative since ``start_ns``."""
        start, now = str(self.start_ns), str(now_ns)
        metrics: list[dict[str, Any]] = []
        with self._lock:
            for name, (unit, description) in HISTOGRAMS.items():
                points = [
                    {
                        "attributes": key_values(dict(key)),
                        "startTimeUnixNano": start,
                        "timeUnixNano": now,
                        "count": str(sum(histogram.counts)),
                        "sum": histogram.sum,
                        "bucketCounts": [str(count) for count in histogram.counts],
                        "explicitBounds": list(BOUNDS),
                        "min": histogram.min,
                        "max": histogram.max,
                    }
                    for key, histogram in self._histograms[name].items()
                ]
                if points:
                    metrics.append(
                        {
                            "name": name,
                            "unit": unit,
                            "description": description,
                            "histogram": {
                                "aggregationTemporality": CUMULATIVE,
                                "dataPoints": points,
                            },
                        }
                    )
            for name, (unit, description) in COUNTERS.items():
                metrics.append(
                    {
                        "name": name,
                        "unit": unit,
                        "description": description,
                        "sum": {
                            "aggregationTemporality": CUMULATIVE,
                            "isMonotonic": True,
                            "dataPoints": [
                                {
                                    "startTimeUnixNano": start,
                                    "timeUnixNano": now,
                                    "asInt": str(self._counters[name]),
                                }
                            ],
                        },
                    }
                )
        return metrics
