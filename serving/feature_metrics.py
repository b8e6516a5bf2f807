"""The feature service's Prometheus metrics (prometheus-client), served on their own port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class FeatureMetrics:
    """One registry per service, so tests can run several services in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("marblekit_feature_requests", "Calls by method and status code",
                                ["method", "code"], registry=self.registry)
        self.latency = Histogram("marblekit_feature_request_seconds", "Call latency by method", ["method"],
                                 registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.in_flight = Gauge("marblekit_feature_requests_in_flight", "Calls being served now",
                               registry=self.registry)
        self.audio_seconds = Counter("marblekit_feature_audio_seconds", "Seconds of audio embedded",
                                     registry=self.registry)
        self.cache_hits = Counter("marblekit_feature_cache_hits", "Embed calls answered from the cache",
                                  registry=self.registry)
        self.cache_misses = Counter("marblekit_feature_cache_misses", "Embed calls computed",
                                    registry=self.registry)
        self.queue_depth = Gauge("marblekit_feature_queue_windows", "Windows waiting for a Triton batch",
                                 registry=self.registry)
        self.triton_latency = Histogram("marblekit_feature_triton_seconds", "Triton call latency",
                                        registry=self.registry,
                                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.batch_windows = Histogram("marblekit_feature_batch_windows", "Windows per Triton call",
                                       registry=self.registry, buckets=(1, 2, 4, 8, 16, 32))
