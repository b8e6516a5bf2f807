"""Which layers one feature-service call may ask for: v1's responses hold ``[..., layers, dim]`` tensors, so a
call takes layers of one width; for a model whose layers differ (MusiCNN) an empty list or a mixed one is
refused with the groups it may ask for."""

from __future__ import annotations

import grpc
import pytest

from marblekit.core.backbones import get_backbone
from marblekit.core.layers import LayerColumns
from marblekit.serving.feature_service import BadRequest, one_width_layers

MUSICNN = get_backbone("musicnn-mtt")
COLUMNS = MUSICNN.columns


def test_layers_of_one_width_are_taken_in_the_order_asked() -> None:
    assert one_width_layers([4, 2, 3], COLUMNS, "musicnn-mtt") == (4, 2, 3)
    uniform = LayerColumns((0, 1, 2), (8, 8, 8))
    assert one_width_layers([], uniform, "m") == (0, 1, 2), "empty: every layer, when they share one width"


@pytest.mark.parametrize("layers", [[], [0, 2]])
def test_layers_of_several_widths_are_refused_with_the_groups(layers: list[int]) -> None:
    with pytest.raises(BadRequest, match=r"different widths .*ask for one of these groups at a time: 0; 1; 2,3,4; "
                                         r"5,6; 7; 8") as refused:
        one_width_layers(layers, COLUMNS, "musicnn-mtt")
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_or_repeated_layers_are_refused() -> None:
    with pytest.raises(BadRequest, match="one of musicnn-mtt's hidden states 0..8") as unknown:
        one_width_layers([9], COLUMNS, "musicnn-mtt")
    assert unknown.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(BadRequest, match="must be unique") as repeated:
        one_width_layers([2, 2], COLUMNS, "musicnn-mtt")
    assert repeated.value.code == grpc.StatusCode.INVALID_ARGUMENT
