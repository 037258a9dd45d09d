from __future__ import annotations

import numpy as np
import pytest
import shapely

from rscovlm.geometry import (
    convex_intersection_areas,
    is_convex,
    min_area_rect,
    order_quad,
    order_quads,
    pair_overlaps,
    quad_areas,
    quads_to_polygons,
    signed_areas,
    touches_inner_edge,
)
from rscovlm.tiling import Window


def _rects(rng, n, spread=50.0):
    c = rng.uniform(0, spread, (n, 2))
    w, h, a = rng.uniform(1, 40, n), rng.uniform(1, 40, n), rng.uniform(0, np.pi, n)
    ux, uy = np.cos(a) * w / 2, np.sin(a) * w / 2
    vx, vy = -np.sin(a) * h / 2, np.cos(a) * h / 2
    cx, cy = c.T
    return np.stack([cx - ux - vx, cy - uy - vy, cx + ux - vx, cy + uy - vy, cx + ux + vx, cy + uy + vy, cx - ux + vx, cy - uy + vy], 1)


def test_order_quad_starts_top_left_and_runs_clockwise():
    np.testing.assert_array_equal(order_quad([0, 10, 10, 10, 10, 0, 0, 0]), [0, 0, 10, 0, 10, 10, 0, 10])
    np.testing.assert_array_equal(order_quad([10, 0, 20, 10, 10, 20, 0, 10]), [10, 0, 20, 10, 10, 20, 0, 10])
    # a bow-tie (edges crossing) becomes the simple quad on the same vertices
    np.testing.assert_array_equal(order_quad([0, 0, 10, 10, 10, 0, 0, 10]), [0, 0, 10, 0, 10, 10, 0, 10])


def test_order_quads_is_vectorised_and_idempotent():
    rng = np.random.default_rng(0)
    quads = _rects(rng, 200)
    shuffled = quads.reshape(-1, 4, 2)[:, rng.permutation(4)].reshape(-1, 8)
    ordered = order_quads(shuffled)
    np.testing.assert_allclose(order_quads(ordered), ordered)
    assert np.all(signed_areas(ordered) > 0)
    ys = ordered[:, 1::2]
    assert np.all(ordered[:, 1] == ys.min(axis=1))
    np.testing.assert_allclose(quad_areas(ordered), quad_areas(quads))


def test_polygons_and_areas_agree_with_shapely():
    rng = np.random.default_rng(1)
    quads = order_quads(_rects(rng, 50))
    polygons = quads_to_polygons(quads)
    assert polygons.shape == (50,) and all(p.geom_type == "Polygon" for p in polygons)
    np.testing.assert_allclose(shapely.area(polygons), quad_areas(quads))
    assert quads_to_polygons(np.zeros((0, 8))).shape == (0,)


def test_convex_intersection_matches_geos():
    rng = np.random.default_rng(2)
    a, b = _rects(rng, 3000), _rects(rng, 3000)
    b[::2] = b[::2].reshape(-1, 4, 2)[:, ::-1].reshape(-1, 8)  # counter-clockwise clip quads too
    assert is_convex(a).all() and is_convex(b).all()
    expected = shapely.area(shapely.intersection(quads_to_polygons(a), shapely.make_valid(quads_to_polygons(b))))
    assert (expected > 0).mean() > 0.2  # the sample exercises real overlaps
    np.testing.assert_allclose(convex_intersection_areas(a, b), expected, atol=1e-6)
    np.testing.assert_allclose(convex_intersection_areas(a, a), quad_areas(a), atol=1e-6)


def test_is_convex_rejects_bow_ties_and_slivers():
    quads = np.array([[0, 0, 10, 0, 10, 10, 0, 10], [0, 0, 10, 10, 10, 0, 0, 10], [0, 0, 5, 0, 10, 0, 5, 5], [0, 0, 10, 0, 2, 2, 0, 10]])
    assert is_convex(quads).tolist() == [True, False, False, False]


def test_pair_overlaps_iou_and_ios():
    quads = np.array([[0, 0, 10, 0, 10, 10, 0, 10], [5, 0, 15, 0, 15, 10, 5, 10], [0, 0, 5, 0, 5, 10, 0, 10], [0, 0, 10, 0, 2, 2, 0, 10]], dtype=float)
    polygons = quads_to_polygons(quads)
    areas = shapely.area(polygons)
    for q in (None, quads):  # GEOS path and numpy path give the same answer
        inter, iou, ios = pair_overlaps(polygons, areas, [0, 0, 0], [1, 2, 3], quads=q)
        np.testing.assert_allclose(inter[:2], [50, 50])
        np.testing.assert_allclose(iou[:2], [50 / 150, 0.5])
        np.testing.assert_allclose(ios[:2], [0.5, 1.0])
        assert inter[2] == pytest.approx(areas[3])  # concave quad inside the square


def test_min_area_rect_of_a_rotated_rectangle_is_itself():
    rng = np.random.default_rng(3)
    rects = order_quads(_rects(rng, 20))
    np.testing.assert_allclose(quad_areas(min_area_rect(rects)), quad_areas(rects), rtol=1e-9)
    tri_like = np.array([[0, 0, 10, 0, 10, 10, 5, 5]], dtype=float)  # concave: the rectangle is its hull's
    assert quad_areas(min_area_rect(tri_like))[0] == pytest.approx(100)
    segment = np.array([[0, 0, 10, 0, 10, 0, 0, 0]], dtype=float)
    assert quad_areas(min_area_rect(segment))[0] == 0


def test_touches_inner_edge_ignores_the_image_border():
    window = Window(412, 0, 512, 512)  # inner edges: left (x=412), right (x=924), bottom (y=512)
    quads = np.array(
        [
            [413, 100, 450, 100, 450, 150, 413, 150],  # near the left inner edge
            [500, 0, 540, 0, 540, 30, 500, 30],  # on the top image border only
            [600, 480, 650, 480, 650, 511, 600, 511],  # near the bottom inner edge
            [600, 200, 650, 200, 650, 250, 600, 250],  # well inside
            [880, 200, 923, 200, 923, 250, 880, 250],  # near the right inner edge
        ],
        dtype=float,
    )
    assert touches_inner_edge(quads, window, (2000, 1200)).tolist() == [True, False, True, False, True]
    # the same window at the right and bottom border of a smaller image: those edges are borders
    assert touches_inner_edge(quads, window, (924, 512)).tolist() == [True, False, False, False, False]
    assert touches_inner_edge(np.zeros((0, 8)), window, (924, 512)).shape == (0,)
