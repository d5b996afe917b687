"""How a large table is cut into block ranges for parallel fingerprint workers (pure part)."""
from __future__ import annotations

import pytest

from ansible.module_utils.pgsafe_fingerprint import piece_bounds


@pytest.mark.parametrize("blocks,pieces", [(0, 4), (1, 4), (3, 4), (10, 1), (10, 3), (18943, 4), (7, 7)])
def test_pieces_cover_every_block_once_with_open_ends(blocks, pieces):
    bounds = piece_bounds(blocks, pieces)
    assert bounds[0][0] is None and bounds[-1][1] is None  # rows beyond the measured size are still read
    assert all(end == nxt for (_, end), (nxt, _) in zip(bounds[:-1], bounds[1:], strict=True))  # no gap, no overlap
    assert all(first < end for first, end in bounds if first is not None and end is not None)
    assert len(bounds) == max(1, min(pieces, blocks))


def test_one_piece_reads_the_whole_table_unfiltered():
    assert piece_bounds(123, 1) == [(None, None)]
