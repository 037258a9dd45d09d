"""``rscovlm synth``: write a synthetic georeferenced scene and its ground truth."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="write a synthetic aerial scene (GeoTIFF) with oriented ground truth",
        description="Render a procedural aerial scene (fields, roads, a river, an airport apron; "
        "planes, ships, storage tanks, small and large vehicles) to a tiled GeoTIFF with "
        "overviews, and its objects' oriented boxes to a vector file in the raster's CRS.",
    )
    parser.add_argument("raster", metavar="OUT.tif", help="the GeoTIFF to write")
    parser.add_argument(
        "--truth", required=True, metavar="TRUTH.gpkg",
        help="ground truth to write (.gpkg, .shp, .geojson)",
    )
    parser.add_argument("--size", type=int, default=2048, metavar="PX", help="side in pixels (default 2048)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default 0)")
    parser.add_argument("--gsd", type=float, default=0.5, metavar="M", help="pixel size in metres (default 0.5)")
    parser.add_argument(
        "--crs", default="EPSG:32633", metavar="EPSG:XXXX",
        help="projected CRS in metres (default EPSG:32633, UTM 33N)",
    )
    parser.add_argument(
        "--density", choices=("normal", "dense"), default="normal",
        help="dense: add full parking lots and crowded marinas, so that many 512 px tiles "
        "hold 100 or more objects (default normal; a normal scene is the same as ever for a seed)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help="processes rendering in parallel (default: automatic)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import time

    from rscovlm.synth import make_scene

    started = time.perf_counter()
    summary = make_scene(
        args.raster, args.truth, size=args.size, seed=args.seed, gsd=args.gsd, crs=args.crs,
        workers=args.workers, density=args.density,
    )
    elapsed = time.perf_counter() - started
    print(
        f"wrote {summary.raster_path} ({summary.size} x {summary.size} px, {summary.gsd:g} m pixels, "
        f"{summary.crs}, overviews {', '.join(map(str, summary.overviews))}) in {elapsed:.1f} s"
    )
    dense = " (dense)" if summary.density != "normal" else ""
    print(f"wrote {summary.truth_path}: {summary.objects} objects{dense}")
    for name, count in summary.counts.items():
        print(f"  {name}: {count}")
    return 0
