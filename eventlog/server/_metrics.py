"""Counters for ``/metrics``, written out in the Prometheus text format (version 0.0.4).

Hand-written rather than prometheus_client: a dozen lines of text do not justify a
dependency with its own global registry. Updated from worker threads, hence the lock.
"""

from __future__ import annotations

import threading
from collections import Counter

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Appends to a local file take tens of microseconds; fsync and lock waits take milliseconds.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.appended: Counter[str] = Counter()         # events written, by kind
        self.append_calls = 0
        self._buckets = [0] * len(LATENCY_BUCKETS)
        self._latency_sum = 0.0
        self.verify_runs = 0
        self.verify_failures = 0
        self.requests: Counter[tuple[str, int]] = Counter()  # (method, status)
        self.streams_open = 0

    def record_append(self, kind: str, events: int, seconds: float) -> None:
        with self._lock:
            self.appended[kind] += events
            self.append_calls += 1
            self._latency_sum += seconds
            for index, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    self._buckets[index] += 1
                    break

    def record_verify(self, sessions: int, failed: int) -> None:
        with self._lock:
            self.verify_runs += sessions
            self.verify_failures += failed

    def record_request(self, method: str, status: int) -> None:
        with self._lock:
            self.requests[(method, status)] += 1

    def stream_opened(self, delta: int) -> None:
        with self._lock:
            self.streams_open += delta

    def render(self, *, sessions: int, store_bytes: int) -> str:
        with self._lock:
            lines = [
                "# HELP eventlog_appended_events_total Events appended through this server, by kind.",
                "# TYPE eventlog_appended_events_total counter",
            ]
            for kind in ("message", "event", "session"):
                lines.append(f'eventlog_appended_events_total{{kind="{kind}"}} {self.appended[kind]}')
            lines += [
                "# HELP eventlog_append_seconds Time to append one request's events (one atomic batch).",
                "# TYPE eventlog_append_seconds histogram",
            ]
            cumulative = 0
            for bound, count in zip(LATENCY_BUCKETS, self._buckets, strict=True):
                cumulative += count
                lines.append(f'eventlog_append_seconds_bucket{{le="{_number(bound)}"}} {cumulative}')
            lines += [
                f'eventlog_append_seconds_bucket{{le="+Inf"}} {self.append_calls}',
                f"eventlog_append_seconds_sum {self._latency_sum!r}",
                f"eventlog_append_seconds_count {self.append_calls}",
                "# HELP eventlog_sessions Sessions in the store.",
                "# TYPE eventlog_sessions gauge",
                f"eventlog_sessions {sessions}",
                "# HELP eventlog_store_bytes Bytes the store's sessions take in storage.",
                "# TYPE eventlog_store_bytes gauge",
                f"eventlog_store_bytes {store_bytes}",
                "# HELP eventlog_verify_runs_total Sessions verified through this server.",
                "# TYPE eventlog_verify_runs_total counter",
                f"eventlog_verify_runs_total {self.verify_runs}",
                "# HELP eventlog_verify_failures_total Verified sessions that had problems.",
                "# TYPE eventlog_verify_failures_total counter",
                f"eventlog_verify_failures_total {self.verify_failures}",
                "# HELP eventlog_sse_streams Live event streams open now.",
                "# TYPE eventlog_sse_streams gauge",
                f"eventlog_sse_streams {self.streams_open}",
                "# HELP eventlog_http_requests_total HTTP requests answered, by method and status.",
                "# TYPE eventlog_http_requests_total counter",
            ]
            for (method, status), count in sorted(self.requests.items()):
                lines.append(f'eventlog_http_requests_total{{method="{method}",code="{status}"}} {count}')
        return "\n".join(lines) + "\n"
