"""A deterministic train/validation split by tile.

Tiles (not images) are shuffled with a seeded generator over their sorted ids, so the
same data and seed always give the same split, whatever order files were listed in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rscovlm.errors import UserError

__all__ = ["split_tiles"]


def split_tiles(tile_ids: Sequence[str], val_fraction: float = 0.1, seed: int = 0) -> dict[str, str]:
    """Map each tile id to ``"train"`` or ``"val"``; at least one of each when there are two tiles or more."""
    if not 0.0 <= float(val_fraction) < 1.0:
        raise UserError(f"--val-fraction must be at least 0 and below 1; got {val_fraction}.")
    ids = sorted(set(tile_ids))
    if len(ids) != len(tile_ids):
        raise ValueError("tile ids must be unique")
    n_val = int(round(len(ids) * val_fraction))
    if val_fraction > 0 and len(ids) >= 2:
        n_val = min(max(n_val, 1), len(ids) - 1)
    order = np.random.default_rng(seed).permutation(len(ids))
    val = {ids[k] for k in order[:n_val]}
    return {tile_id: ("val" if tile_id in val else "train") for tile_id in ids}
