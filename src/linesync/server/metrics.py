"""A few counters and a latency histogram, rendered in Prometheus text format."""

from __future__ import annotations

from collections import defaultdict

_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self.help: dict[str, str] = {}
        self.hist: dict[str, list[int]] = defaultdict(lambda: [0] * (len(_BUCKETS) + 1))
        self.hist_sum: dict[str, float] = defaultdict(float)

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        self.counters[(name, tuple(sorted(labels.items())))] += value

    def observe(self, route: str, seconds: float) -> None:
        counts = self.hist[route]
        for i, bound in enumerate(_BUCKETS):
            if seconds <= bound:
                counts[i] += 1
                break
        else:
            counts[-1] += 1
        self.hist_sum[route] += seconds

    def render(self, gauges: dict[str, float]) -> str:
        lines: list[str] = []
        seen: set[str] = set()
        for (name, labels), value in sorted(self.counters.items()):
            if name not in seen:
                lines.append(f"# TYPE {name} counter")
                seen.add(name)
            lab = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.append(f"{name}{{{lab}}} {value:g}" if lab else f"{name} {value:g}")
        for name, value in sorted(gauges.items()):
            lines.append(f"# TYPE {name} gauge")
            lines.append(f"{name} {value:g}")
        lines.append("# TYPE linesync_request_seconds histogram")
        for route, counts in sorted(self.hist.items()):
            total = 0
            for bound, n in zip(_BUCKETS, counts, strict=False):
                total += n
                lines.append(
                    f'linesync_request_seconds_bucket{{route="{route}",le="{bound}"}} {total}'
                )
            total += counts[-1]
            lines.append(f'linesync_request_seconds_bucket{{route="{route}",le="+Inf"}} {total}')
            lines.append(
                f'linesync_request_seconds_sum{{route="{route}"}} {self.hist_sum[route]:g}'
            )
            lines.append(f'linesync_request_seconds_count{{route="{route}"}} {total}')
        return "\n".join(lines) + "\n"
