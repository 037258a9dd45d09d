"""How near a detector's boxes come to the truth: a learning signal for while mAP is still 0.

mAP@0.5 stays at zero until boxes overlap their objects by half, so early in training it
cannot tell a model that places boxes a little off from one that places them anywhere.
This prints, per class, the distance from each predicted centre to the nearest true
centre of its class (in the same image), and the share of true objects that have a
prediction whose centre lies inside them, next to what uniformly random centres would
score on the same images.

    python scripts/localisation_error.py --pred eval/heldout_detections.gpkg \
        --truth eval/heldout_truth.gpkg --image-field scene --classes "plane,storage tank"
"""

from __future__ import annotations

import argparse

import geopandas as gpd
import numpy as np


def nearest_distances(pred: gpd.GeoDataFrame, truth: gpd.GeoDataFrame) -> np.ndarray:
    """Distance from each prediction's centre to the nearest truth centre (same CRS units)."""
    if pred.empty or truth.empty:
        return np.empty(0)
    joined = gpd.sjoin_nearest(pred.set_geometry(pred.centroid)[["geometry"]],
                               truth.set_geometry(truth.centroid)[["geometry"]], distance_col="d")
    return joined.groupby(level=0)["d"].first().to_numpy()


def hit_share(pred: gpd.GeoDataFrame, truth: gpd.GeoDataFrame) -> float:
    """Share of true objects that hold at least one predicted centre."""
    if truth.empty:
        return float("nan")
    if pred.empty:
        return 0.0
    hits = gpd.sjoin(truth[["geometry"]], pred.set_geometry(pred.centroid)[["geometry"]], predicate="contains")
    return hits.index.nunique() / len(truth)


def random_like(pred: gpd.GeoDataFrame, extent: gpd.GeoDataFrame, rng: np.random.Generator) -> gpd.GeoDataFrame:
    """As many uniformly random points as ``pred`` has, inside the bounds of ``extent`` (the image's truth)."""
    minx, miny, maxx, maxy = extent.total_bounds
    xs, ys = rng.uniform(minx, maxx, len(pred)), rng.uniform(miny, maxy, len(pred))
    return gpd.GeoDataFrame(geometry=gpd.points_from_xy(xs, ys), crs=pred.crs, index=pred.index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pred", required=True)
    parser.add_argument("--truth", required=True)
    parser.add_argument("--class-field", default="class")
    parser.add_argument("--image-field", default=None, help="field naming the image (several scenes in one file)")
    parser.add_argument("--classes", default=None, help="comma-separated classes to report (default: the truth's)")
    args = parser.parse_args()

    pred, truth = gpd.read_file(args.pred), gpd.read_file(args.truth)
    pred = pred.to_crs(truth.crs)
    classes = args.classes.split(",") if args.classes else sorted(truth[args.class_field].unique())
    images = sorted(truth[args.image_field].unique()) if args.image_field else [None]
    rng = np.random.default_rng(0)
    print(f"{'class':14} {'pred':>5} {'truth':>5}  {'median d':>9} {'random d':>9}  {'hit':>5} {'random hit':>10}")
    for name in classes:
        dists, rand, hit_n, rand_hit_n, n_truth, n_pred = [], [], 0.0, 0.0, 0, 0
        for image in images:
            p = pred[pred[args.class_field] == name]
            t = truth[truth[args.class_field] == name]
            scene = truth
            if image is not None:
                p, t = p[p[args.image_field] == image], t[t[args.image_field] == image]
                scene = truth[truth[args.image_field] == image]
            fake = random_like(p, scene, rng)
            dists.append(nearest_distances(p, t))
            rand.append(nearest_distances(fake, t))
            if len(t):
                hit_n += hit_share(p, t) * len(t)
                rand_hit_n += hit_share(fake, t) * len(t)
            n_truth, n_pred = n_truth + len(t), n_pred + len(p)
        d, r = np.concatenate(dists), np.concatenate(rand)
        med = f"{np.median(d):9.1f}" if len(d) else f"{'-':>9}"
        rmed = f"{np.median(r):9.1f}" if len(r) else f"{'-':>9}"
        hit, rand_hit = (f"{n / n_truth:.2f}" if n_truth else "-" for n in (hit_n, rand_hit_n))
        print(f"{name:14} {n_pred:5d} {n_truth:5d}  {med} {rmed}  {hit:>5} {rand_hit:>10}")
    print("d: distance from a predicted centre to the nearest true centre of its class (CRS units);"
          " hit: share of true objects holding a predicted centre; random: as many uniform centres.")


if __name__ == "__main__":
    main()
