"""The feature service's gRPC server: the Features service with standard health checking and server reflection
(so grpcurl and load balancers work), an optional bearer token and TLS, limits, and Prometheus metrics.

Health is SERVING while Triton answers ready, NOT_SERVING otherwise (checked every second). Stopping first
turns health to NOT_SERVING, then drains in-flight calls for ``grace_s`` seconds.
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import tritonclient.grpc as triton
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server
from tritonclient.utils import InferenceServerException

from marblekit.features.v1 import features_pb2, features_pb2_grpc

from .auth import BearerTokenInterceptor
from .client import CHANNEL_ARGS
from .feature_cache import FeatureCache
from .feature_metrics import FeatureMetrics
from .feature_service import FeatureService, Limits

SERVICE_NAME = features_pb2.DESCRIPTOR.services_by_name["Features"].full_name


@dataclass(frozen=True)
class ServerSettings:
    """Where the service listens and what it allows. Ports 0 pick a free port; ``metrics_port`` None: no
    metrics endpoint."""

    host: str = "127.0.0.1"
    port: int = 50051
    metrics_port: int | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    token: str | None = None
    max_message_bytes: int = 64 << 20
    max_concurrent: int = 128
    threads: int = 32
    cache_bytes: int = 512 << 20
    cache_dir: Path | None = None
    stores: dict[str, Path] = field(default_factory=dict)
    limits: Limits = Limits()
    grace_s: float = 10.0


class FeatureServer:
    """The running service; a context manager that stops it cleanly."""

    def __init__(self, triton_url: str, models: list[str], settings: ServerSettings = ServerSettings()):
        if (settings.tls_cert is None) != (settings.tls_key is None):
            raise ValueError("TLS needs both --tls-cert and --tls-key")
        self.triton_url, self.models, self.settings = triton_url, models, settings
        self.metrics = FeatureMetrics()
        self.health = health.HealthServicer()
        self._stopped = threading.Event()
        self.port = 0
        self.metrics_port: int | None = None

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    def start(self) -> FeatureServer:
        settings = self.settings
        self.service = FeatureService(self.triton_url, self.models, settings.stores,
                                      FeatureCache(settings.cache_bytes, settings.cache_dir), settings.limits,
                                      self.metrics)
        options = [("grpc.max_receive_message_length", settings.max_message_bytes),
                   ("grpc.max_send_message_length", settings.max_message_bytes)]
        interceptors = [BearerTokenInterceptor(settings.token)] if settings.token else []
        self.server = grpc.server(futures.ThreadPoolExecutor(settings.threads, thread_name_prefix="features"),
                                  interceptors=interceptors, options=options,
                                  maximum_concurrent_rpcs=settings.max_concurrent)
        features_pb2_grpc.add_FeaturesServicer_to_server(self.service, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server)
        where = f"{settings.host}:{settings.port}"
        if settings.tls_cert is not None and settings.tls_key is not None:
            credentials = grpc.ssl_server_credentials([(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())])
            self.port = self.server.add_secure_port(where, credentials)
        else:
            self.port = self.server.add_insecure_port(where)
        if settings.metrics_port is not None:
            self._metrics_server, _ = start_http_server(settings.metrics_port, settings.host,
                                                        registry=self.metrics.registry)
            self.metrics_port = self._metrics_server.server_port
        self.server.start()
        self._watcher = threading.Thread(target=self._watch_triton, name="health", daemon=True)
        self._watcher.start()
        return self

    def _watch_triton(self) -> None:
        """SERVING while Triton and every model answer ready, NOT_SERVING otherwise."""
        client = triton.InferenceServerClient(self.triton_url, channel_args=CHANNEL_ARGS)
        try:
            while not self._stopped.is_set():
                try:
                    ready = client.is_server_ready(client_timeout=2.0) and all(
                        client.is_model_ready(name, client_timeout=2.0) for name in self.models)
                except InferenceServerException:
                    ready = False
                status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
                for service in ("", SERVICE_NAME):
                    self.health.set(service, status)
                self._stopped.wait(1.0)
        finally:
            client.close()

    def wait(self) -> None:
        self.server.wait_for_termination()

    def stop(self) -> None:
        """NOT_SERVING first (load balancers move away), then drain in-flight calls."""
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        self.server.stop(self.settings.grace_s).wait()
        self.service.close()
        if self.metrics_port is not None:
            self._metrics_server.shutdown()

    def __enter__(self) -> FeatureServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
