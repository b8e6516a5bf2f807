"""Work submitted a bounded distance ahead of its use: enough in flight to hide latency, never all of it."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")
Handle = TypeVar("Handle")


def submitted_ahead(items: Iterable[Item], submit: Callable[[Item], Handle], depth: int
                    ) -> Iterator[tuple[Item, Handle]]:
    """Each item with what ``submit`` returned for it, in order, submitting at most ``depth`` items beyond the
    one the caller is given (so memory, or scratch disk, stays bounded by ``depth``)."""
    ahead: collections.deque[tuple[Item, Handle]] = collections.deque()
    for item in items:
        ahead.append((item, submit(item)))
        if len(ahead) > depth:
            yield ahead.popleft()
    while ahead:
        yield ahead.popleft()
