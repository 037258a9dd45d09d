"""``rscovlm ask``: questions, captions, classes and grounding on a raster or a region of it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import UserError
from .detect import _floats4, _ints4
from .engine_options import add_engine_arguments, load_engine

DEFAULT_MODEL = "Qingyun/RSCoVLM-7B-2512"


def _bands(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    if not values:
        raise argparse.ArgumentTypeError(f"expected band numbers such as 3,2,1, got {text!r}")
    return values


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "ask",
        help="ask a question about a raster or a region of it (Zoom-in Chain)",
        description="Ask RSCoVLM about RASTER or a region of it. The region is shown downsampled to the "
        "model's pixel budget; the model picks where to zoom in, and that part is read at native "
        "resolution for its answer. Other tasks: a caption, a scene class from your list, or a "
        "georeferenced box around a described object.",
    )
    parser.add_argument("raster", type=Path, help="the raster to read (GeoTIFF or any GDAL raster)")
    parser.add_argument("question", nargs="?", default="",
                        help="the question (ask), or what to find (ground); not needed for caption/classify")
    parser.add_argument("--task", choices=["ask", "caption", "classify", "ground"], default="ask")
    region = parser.add_mutually_exclusive_group()
    region.add_argument("--region", type=_floats4, metavar="MINX,MINY,MAXX,MAXY",
                        help="the region as map bounds (in --region-crs, default the raster's CRS)")
    region.add_argument("--window", type=_ints4, metavar="COL,ROW,WIDTH,HEIGHT",
                        help="the region as a window of raster pixels")
    parser.add_argument("--region-crs", metavar="EPSG:XXXX", help="CRS of --region (default: the raster's)")
    parser.add_argument("--no-zoom", dest="zoom", action="store_false",
                        help="ask plainly about the whole region (better for counting questions)")
    parser.add_argument("--classes", help="comma-separated scene classes for --task classify")
    parser.add_argument("--grounding-form", choices=["plain", "json"], default="plain",
                        help="grounding prompt form the model was trained on (default plain)")
    parser.add_argument("--bands", type=_bands, help="raster bands shown as R,G,B, e.g. 3,2,1")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="model pixel budget per image (default 1008*1008)")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--json", dest="json_out", type=Path, metavar="OUT.json",
                        help="write the full result (answer, transcript, geometries, timings) as JSON")
    parser.add_argument("--roi-out", type=Path, metavar="ROI.gpkg",
                        help="write the region of interest / grounded box as a vector file (.gpkg, .shp, .geojson)")
    add_engine_arguments(parser, required=False)
    parser.set_defaults(run=run, model=DEFAULT_MODEL)


def _options(args: argparse.Namespace):
    from ..pipelines.ask import AskOptions
    from ..tiling import Window

    if args.region_crs and args.region is None:
        raise UserError("--region-crs applies to --region; give the region bounds too.")
    extra = {"max_pixels": args.max_pixels} if args.max_pixels else {}
    return AskOptions(
        zoom=args.zoom,
        window=Window(*args.window) if args.window else None,
        bounds=args.region,
        bounds_crs=args.region_crs,
        bands=args.bands,
        max_new_tokens=args.max_new_tokens,
        **extra,
    )


def _check_task_inputs(args: argparse.Namespace) -> None:
    if args.task in ("ask", "ground") and not args.question.strip():
        what = "a question" if args.task == "ask" else "a description of what to find"
        raise UserError(f"--task {args.task} needs {what} after the raster path, in quotes.")
    if args.task == "classify" and not args.classes:
        raise UserError("--task classify needs --classes, e.g. --classes 'farmland,forest,residential'.")
    for path in (args.json_out, args.roi_out):
        if path is not None and not (path.parent if str(path.parent) else Path(".")).is_dir():
            raise UserError(f"Cannot write {path}: the folder {path.parent} does not exist.")


def _write_roi(result, path: Path) -> None:
    import geopandas as gpd

    from ..outputs import write_vector

    collection = result.features()
    if not collection["features"]:
        print(f"No region of interest or box to write; {path} was not written.", file=sys.stderr)
        return
    frame = gpd.GeoDataFrame.from_features(collection["features"], crs=result.crs)
    write_vector(frame, path)
    print(f"Wrote {path}")


def run(args: argparse.Namespace) -> int:
    from ..pipelines import ask as pipeline

    _check_task_inputs(args)
    options = _options(args)
    from ..raster import RasterSource

    with RasterSource.open(args.raster, bands=args.bands) as source:  # a bad raster or region fails before the model loads
        pipeline.resolve_region(source, options)
    engine = load_engine(args)
    if args.task == "ask":
        result = pipeline.ask(args.raster, args.question, engine, options)
    elif args.task == "caption":
        result = pipeline.caption(args.raster, engine, options)
    elif args.task == "classify":
        result = pipeline.classify(args.raster, args.classes, engine, options)
    else:
        result = pipeline.ground(args.raster, args.question, engine, options, form=args.grounding_form)
    print(result.summary())
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"Wrote {args.json_out}")
    if args.roi_out is not None:
        _write_roi(result, args.roi_out)
    return 0
