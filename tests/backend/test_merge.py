from __future__ import annotations

import numpy as np
import pytest

from rscovlm.errors import UserError
from rscovlm.geometry import touches_inner_edge
from rscovlm.merge import MergeConfig, merge_detections
from rscovlm.tiling import Window, tile_windows


def rect(x0, y0, x1, y1):
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def merge(quads, labels, tiles, edges, **kw):
    return merge_detections(np.asarray(quads, float), np.asarray(labels), np.asarray(tiles), np.asarray(edges), MergeConfig(**kw))


def test_duplicate_seen_by_two_tiles_is_merged_with_support_two():
    r = merge([rect(430, 100, 470, 130), rect(431, 101, 470, 131)], ["ship", "ship"], [0, 1], [False, False])
    assert len(r.keep) == 1 and r.support.tolist() == [2]
    assert sorted(r.suppressed_by.tolist()) == [-1, int(r.keep[0])]


def test_two_detections_in_one_tile_count_as_one_tile_of_support():
    r = merge([rect(0, 0, 40, 30), rect(1, 0, 41, 30)], ["ship", "ship"], [3, 3], [False, False])
    assert len(r.keep) == 1 and r.support.tolist() == [1]


def test_truncated_piece_at_an_inner_edge_merges_into_the_whole_object():
    # tile 0 spans x 0..512 and cuts a 200 px long bridge at x=512; tile 1 (x 412..924) sees it whole
    whole = rect(450, 100, 650, 130)
    piece = rect(450, 100, 511, 130)
    windows = [Window(0, 0, 512, 512), Window(412, 0, 512, 512)]
    edges = [touches_inner_edge(np.array([q], float), w, (924, 512))[0] for q, w in zip([piece, whole], windows)]
    assert edges == [True, False]
    r = merge([piece, whole], ["bridge", "bridge"], [0, 1], edges)
    assert r.keep.tolist() == [1] and r.support.tolist() == [2]
    # IoU alone (about 0.3 here) would not be enough at a stricter IoU threshold
    assert len(merge([piece, whole], ["bridge"] * 2, [0, 1], edges, iou_threshold=0.5).keep) == 1
    assert len(merge([piece, whole], ["bridge"] * 2, [0, 1], edges, iou_threshold=0.5, ios_threshold=None).keep) == 2


def test_small_object_on_a_big_one_survives_when_not_at_an_edge():
    big, small = rect(0, 0, 200, 100), rect(50, 40, 70, 60)  # IoU 0.02, IOS 1.0
    r = merge([big, small], ["bridge", "bridge"], [0, 0], [False, False])
    assert sorted(r.keep.tolist()) == [0, 1]


def test_distinct_adjacent_objects_are_kept():
    cars = [rect(100, 100, 120, 110), rect(121, 100, 141, 110), rect(100, 111, 120, 121)]
    r = merge(cars, ["small vehicle"] * 3, [0, 1, 0], [False, False, False])
    assert sorted(r.keep.tolist()) == [0, 1, 2] and r.support.tolist() == [1, 1, 1]


def test_different_classes_are_never_merged():
    r = merge([rect(0, 0, 40, 40), rect(0, 0, 40, 40)], ["plane", "helicopter"], [0, 1], [False, False])
    assert sorted(r.keep.tolist()) == [0, 1]


def test_inside_tile_detection_wins_over_larger_edge_touching_one():
    inside = rect(430, 100, 470, 130)
    at_edge = rect(428, 98, 473, 133)  # larger, but touches an inner edge in its tile
    r = merge([at_edge, inside], ["ship", "ship"], [0, 1], [True, False])
    assert r.keep.tolist() == [1]


def test_result_does_not_depend_on_input_order():
    rng = np.random.default_rng(5)
    base = rng.uniform(0, 2000, (300, 2))
    quads, labels, tiles, edges = [], [], [], []
    for k, (x, y) in enumerate(base):
        for t in range(rng.integers(1, 4)):  # seen by 1-3 tiles with a little jitter
            j = rng.normal(0, 1.5, 4)
            quads.append(rect(x + j[0], y + j[1], x + 30 + j[2], y + 15 + j[3]))
            labels.append(["ship", "plane", "harbor"][k % 3])
            tiles.append(k % 7 + t)
            edges.append(bool(rng.random() < 0.2))
    quads, labels, tiles, edges = np.array(quads), np.array(labels), np.array(tiles), np.array(edges)
    ref = merge(quads, labels, tiles, edges)
    ref_set = sorted(zip(quads[ref.keep].round(9).tolist(), ref.support.tolist()))
    for seed in range(5):
        perm = np.random.default_rng(seed).permutation(len(quads))
        r = merge(quads[perm], labels[perm], tiles[perm], edges[perm])
        np.testing.assert_array_equal(quads[perm][r.keep], quads[ref.keep])  # same objects, same order
        assert sorted(zip(quads[perm][r.keep].round(9).tolist(), r.support.tolist())) == ref_set
    assert len(ref.keep) < len(quads)


def test_every_detection_is_kept_or_absorbed_by_a_kept_one():
    quads = np.array([rect(0, 0, 10, 10), rect(1, 1, 11, 11), rect(2, 2, 12, 12), rect(50, 50, 60, 60)], float)
    r = merge(quads, ["a"] * 4, [0, 1, 2, 3], [False] * 4)
    kept = set(r.keep.tolist())
    for i, s in enumerate(r.suppressed_by.tolist()):
        assert (i in kept) == (s == -1)
        assert s == -1 or s in kept


def test_empty_input_and_bad_config():
    r = merge(np.zeros((0, 8)), np.array([], dtype=str), np.array([], dtype=int), np.array([], dtype=bool))
    assert r.keep.shape == (0,) and r.support.shape == (0,)
    with pytest.raises(UserError, match="IoU threshold"):
        MergeConfig(iou_threshold=0)
    with pytest.raises(ValueError, match="disagree in length"):
        merge([rect(0, 0, 1, 1)], ["a", "b"], [0], [False])


def test_tiles_then_merge_recover_each_object_once():
    """End to end on the pure pieces: objects cut into tiles, pieces flagged, merged back."""
    import shapely

    width, height = 1500, 1100
    rng = np.random.default_rng(11)
    objects = []
    while len(objects) < 60:
        x, y = rng.uniform(0, width - 60), rng.uniform(0, height - 40)
        q = rect(x, y, x + rng.uniform(15, 60), y + rng.uniform(10, 40))
        if all(not shapely.box(*o[:2], *o[4:6]).intersects(shapely.box(*q[:2], *q[4:6]).buffer(3)) for o in objects):
            objects.append(q)
    quads, tiles, edges = [], [], []
    for t, w in enumerate(tile_windows(width, height)):
        tile_box = shapely.box(w.col_off, w.row_off, w.col_end, w.row_end)
        for q in objects:
            piece = shapely.box(*q[:2], *q[4:6]).intersection(tile_box)
            if piece.area >= 0.3 * (q[4] - q[0]) * (q[5] - q[1]):
                x0, y0, x1, y1 = piece.bounds
                quads.append(rect(x0, y0, x1, y1))
                tiles.append(t)
                edges.append(bool(touches_inner_edge(np.array([quads[-1]]), w, (width, height))[0]))
    quads = np.array(quads)
    r = merge(quads, ["ship"] * len(quads), tiles, edges)
    assert len(r.keep) == len(objects)
    assert r.support.max() >= 2


def scored_merge(quads, labels, tiles, edges, scores, **kw):
    return merge_detections(np.asarray(quads, float), np.asarray(labels), np.asarray(tiles), np.asarray(edges),
                            MergeConfig(**kw), scores=None if scores is None else np.asarray(scores, float))


def test_of_two_overlapping_sightings_the_better_scored_one_is_kept():
    larger, smaller = rect(430, 100, 472, 132), rect(431, 101, 470, 131)  # score-free: the larger one wins
    both = [larger, smaller]
    assert scored_merge(both, ["ship"] * 2, [0, 1], [False] * 2, None).keep.tolist() == [0]
    for order in ([0, 1], [1, 0]):  # whatever order they come in
        quads = [both[k] for k in order]
        scores = [[0.4, 0.9][k] for k in order]
        r = scored_merge(quads, ["ship"] * 2, [0, 1], [False] * 2, scores, score_rule="own", order_by_score=True)
        assert [order[k] for k in r.keep] == [1] and r.scores.tolist() == [0.9] and r.support.tolist() == [2]
    # equal scores fall back to the score-free order; so does a merge told not to order by score
    assert scored_merge(both, ["ship"] * 2, [0, 1], [False] * 2, [0.5, 0.5], order_by_score=True).keep.tolist() == [0]
    r = scored_merge(both, ["ship"] * 2, [0, 1], [False] * 2, [0.4, 0.9], order_by_score=False, score_rule="max")
    assert r.keep.tolist() == [0] and r.scores.tolist() == [0.9]


def test_a_piece_at_a_tile_edge_loses_to_the_whole_object_however_sure():
    whole, piece = rect(450, 100, 650, 130), rect(450, 100, 511, 130)
    r = scored_merge([piece, whole], ["bridge"] * 2, [0, 1], [True, False], [0.99, 0.2], score_rule="own",
                     order_by_score=True)
    assert r.keep.tolist() == [1] and r.scores.tolist() == [0.2]


def test_without_scores_the_merge_is_the_score_free_one_exactly():
    rng = np.random.default_rng(2)
    quads, tiles = [], []
    for k, (x, y) in enumerate(rng.uniform(0, 1500, (150, 2))):
        for t in range(rng.integers(1, 4)):
            j = rng.normal(0, 2, 4)
            quads.append(rect(x + j[0], y + j[1], x + 25 + j[2], y + 12 + j[3]))
            tiles.append(k % 5 + t)
    labels, edges = ["ship"] * len(quads), rng.random(len(quads)) < 0.2
    plain = scored_merge(quads, labels, tiles, edges, None)
    unscored = scored_merge(quads, labels, tiles, edges, np.full(len(quads), np.nan))
    assert plain.scores is None and unscored.scores is None
    for a, b in ((plain.keep, unscored.keep), (plain.support, unscored.support),
                 (plain.suppressed_by, unscored.suppressed_by)):
        assert np.array_equal(a, b)
    scored = scored_merge(quads, labels, tiles, edges, rng.random(len(quads)), order_by_score=True)
    assert len(scored.keep) == len(plain.keep) and not np.array_equal(scored.keep, plain.keep)


def test_group_rules_combine_the_sightings_scores():
    from rscovlm.merge import group_scores

    scores = np.array([0.5, 0.8, np.nan, 0.6, 0.3, 0.9])
    absorbed_by = np.array([-1, 0, 0, -1, -1, 0])  # 0 absorbed 1, 2 and 5; 3 and 4 stand alone
    tiles = np.array([0, 1, 1, 2, 2, 1])
    keep = np.array([0, 3, 4])
    assert group_scores(scores, keep, absorbed_by, tiles, "own").tolist() == [0.5, 0.6, 0.3]
    assert group_scores(scores, keep, absorbed_by, tiles, "max").tolist() == [0.9, 0.6, 0.3]
    assert group_scores(scores, keep, absorbed_by, tiles, "mean") == pytest.approx([2.2 / 3, 0.6, 0.3])
    # noisy-or over distinct tiles, each tile's best sighting: 1 - (1 - 0.5)(1 - 0.9)
    assert group_scores(scores, keep, absorbed_by, tiles, "noisy_or") == pytest.approx([0.95, 0.6, 0.3])
    with pytest.raises(UserError, match="score rule"):
        MergeConfig(score_rule="best")
