"""``rscovlm detect``: tiled oriented object detection from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UserError
from .engine_options import add_engine_arguments, load_engine


def _classes(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _floats4(text: str) -> tuple[float, float, float, float]:
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"expected MINX,MINY,MAXX,MAXY (four numbers), got {text!r}")
    return values  # type: ignore[return-value]


def _ints4(text: str) -> tuple[int, int, int, int]:
    parts = text.split(",")
    if len(parts) != 4 or not all(p.strip().lstrip("-").isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected COL,ROW,WIDTH,HEIGHT (four integers), got {text!r}")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="detect oriented objects on a raster and write georeferenced polygons",
        description="Read RASTER in overlapping tiles, ask the model for oriented boxes, merge duplicates "
        "across tiles and write polygons in the raster's CRS (GeoPackage, Shapefile or GeoJSON by extension).",
    )
    parser.add_argument("raster", type=Path, help="the raster to read (GeoTIFF or any GDAL raster)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output vector file: .gpkg, .shp or .geojson")
    parser.add_argument("--classes", type=_classes, help="comma-separated class names (default: the 15 DOTA-v1.0 classes)")
    parser.add_argument("--form", choices=["quad", "json", "hbb"], default="quad", help="prompt/answer form (default quad)")
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=100)
    parser.add_argument("--max-mode", action="store_true", help="upsample tiles to the largest model input (small objects)")
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--bands", type=lambda s: tuple(int(b) for b in s.split(",")), help="1-based bands used as R,G,B, e.g. 3,2,1")
    region = parser.add_mutually_exclusive_group()
    region.add_argument("--window", type=_ints4, metavar="COL,ROW,WIDTH,HEIGHT", help="a pixel window to restrict detection to")
    region.add_argument("--region", type=_floats4, metavar="MINX,MINY,MAXX,MAXY", help="a map extent to restrict detection to")
    parser.add_argument("--region-crs", help="CRS of --region (default: the raster's), e.g. EPSG:4326")
    parser.add_argument("--iou", type=float, help="merge IoU threshold (default 0.1)")
    parser.add_argument("--ios", type=float, help="merge IOS threshold for truncated pieces (default 0.5)")
    parser.add_argument("--responses-out", type=Path, help="keep the raw per-tile model responses as JSONL")
    parser.add_argument("--from-responses", type=Path, help="re-run post-processing from a responses JSONL, without a model")
    parser.add_argument("--dota-out", type=Path, help="also write DOTA Task-1 text (image pixels)")
    add_engine_arguments(parser, required=False)
    parser.set_defaults(run=run)


def build_options(args: argparse.Namespace):
    from ..merge import MergeConfig
    from ..pipelines.detect import DetectOptions
    from ..tiling import Window

    merge_kwargs = {}
    if args.iou is not None:
        merge_kwargs["iou_threshold"] = args.iou
    if args.ios is not None:
        merge_kwargs["ios_threshold"] = args.ios
    kwargs = dict(
        form=args.form,
        tile_size=args.tile_size,
        overlap=args.overlap,
        max_mode=args.max_mode,
        max_new_tokens=args.max_new_tokens,
        bands=args.bands,
        window=Window(*args.window) if args.window else None,
        bounds=args.region,
        bounds_crs=args.region_crs,
        merge=MergeConfig(**merge_kwargs),
    )
    if args.classes:
        kwargs["classes"] = args.classes
    return DetectOptions(**kwargs)


def run(args: argparse.Namespace) -> int:
    from ..outputs import vector_driver, write_dota, write_vector
    from ..pipelines.detect import detect, detect_from_responses, plan_windows
    from ..raster import RasterSource

    vector_driver(args.output)  # fail before any model loads: unsupported extension,
    options = build_options(args)
    with RasterSource.open(args.raster, bands=options.bands) as source:  # bad raster, bands, region or tiles
        plan_windows(source, options)

    if args.from_responses:
        if args.responses_out:
            raise UserError("--from-responses replays a file; --responses-out would only copy it: drop one of them.")
        result = detect_from_responses(args.raster, args.from_responses, options)
    else:
        if not args.model:
            raise UserError("Name a model with --model (a folder or Hugging Face id), or replay responses with --from-responses.")
        from tqdm import tqdm

        engine = load_engine(args)
        bar = tqdm(total=0, unit="tile", desc="detect", file=sys.stderr, dynamic_ncols=True)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            result = detect(args.raster, engine, options, progress=progress, responses_out=args.responses_out)
        finally:
            bar.close()

    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    write_vector(result.gdf, args.output)
    if args.dota_out:
        write_dota(args.dota_out, result.quads_img, result.labels)
    print(result.summary())
    crs = result.crs.to_string() if result.crs is not None else "no CRS"
    print(f"Wrote {args.output} ({crs})")
    if args.responses_out:
        print(f"Raw responses: {args.responses_out} (replay with --from-responses)")
    return 0
