"""numpy arrays as the API's ``Tensor`` messages (raw little-endian data, shape and dtype), both ways."""

from __future__ import annotations

import numpy as np

from marblekit.features.v1 import features_pb2 as pb

DTYPES = ("float32", "float16")


def to_tensor(array: np.ndarray) -> pb.Tensor:
    array = np.asarray(array)
    if array.dtype.name not in DTYPES:
        raise ValueError(f"tensors are {' or '.join(DTYPES)}, got {array.dtype}")
    return pb.Tensor(shape=list(array.shape), dtype=array.dtype.name,
                     data=np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes())


def from_tensor(tensor: pb.Tensor) -> np.ndarray:
    if tensor.dtype not in DTYPES:
        raise ValueError(f"tensor dtype must be one of {DTYPES}, got {tensor.dtype!r}")
    dtype = np.dtype(tensor.dtype).newbyteorder("<")
    return np.frombuffer(tensor.data, dtype).astype(dtype.newbyteorder("="), copy=False).reshape(tuple(tensor.shape))
