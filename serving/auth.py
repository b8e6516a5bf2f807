"""An optional bearer token for the feature service, checked by a server interceptor.

Every call must carry ``authorization: Bearer <token>`` metadata, or it is refused with UNAUTHENTICATED before
any work is done. The standard health check stays open, so load balancers can probe without the secret. The
token is compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

HEALTH_PREFIX = "/grpc.health.v1.Health/"


def read_token(path: Path) -> str:
    """The token in ``path`` (surrounding white space ignored); refuses an empty file."""
    token = Path(path).read_text().strip()
    if not token:
        raise ValueError(f"--token-file {path} is empty: expected the bearer token on its first line")
    return token


class BearerTokenInterceptor(grpc.ServerInterceptor):
    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails) -> Any:
        if details.method.startswith(HEALTH_PREFIX):
            return continuation(details)
        given = dict(details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(str(given).encode(), self._expected):
            return continuation(details)
        return _refusal(continuation(details))


def _refusal(handler: Any) -> Any:
    """A handler of the same shape as ``handler`` that aborts with UNAUTHENTICATED."""
    def deny(_request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token (metadata "
                                                       "'authorization: Bearer <token>')")

    if handler is None:
        return None
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny, request_deserializer=handler.request_deserializer)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny, request_deserializer=handler.request_deserializer)
    return grpc.unary_unary_rpc_method_handler(deny, request_deserializer=handler.request_deserializer)
