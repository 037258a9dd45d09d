"""``rscovlm detect``: tiled oriented object detection from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import defaults
from ..errors import UserError
from ..scores import DEFINITIONS
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
        help="detect oriented objects on rasters and write georeferenced polygons",
        description="Read each RASTER in overlapping tiles, ask the model for oriented boxes, merge duplicates "
        "across tiles and write polygons in the raster's CRS (GeoPackage, Shapefile or GeoJSON by extension). "
        "Several rasters, folders of rasters or a VRT mosaic go in one run: into one file with a 'source' "
        "field, or one file per raster when --output is a folder. Exit status: 0 all done, 2 bad input, "
        "3 some rasters or tiles failed (the rest is written; --resume retries what is missing).",
    )
    parser.add_argument("raster", type=Path, nargs="+", help="raster files (GeoTIFF, VRT or any GDAL raster) or folders of them")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="output vector file (.gpkg, .shp or .geojson), or a folder for one GeoPackage per raster")
    parser.add_argument("--classes", type=_classes, help="comma-separated class names (default: the 15 DOTA-v1.0 classes)")
    parser.add_argument("--form", choices=["quad", "json", "hbb"], default="quad", help="prompt/answer form (default quad)")
    parser.add_argument("--tile-size", type=int, default=defaults.TILE_SIZE, help=f"default {defaults.TILE_SIZE}")
    parser.add_argument("--overlap", type=int, default=defaults.OVERLAP, help=f"default {defaults.OVERLAP}")
    parser.add_argument("--max-mode", action="store_true", help="upsample tiles to the largest model input (small objects)")
    parser.add_argument("--max-new-tokens", type=int, default=defaults.DETECT_MAX_NEW_TOKENS,
                        help=f"answer budget per tile (default {defaults.DETECT_MAX_NEW_TOKENS}, as the reference; "
                        "lowered to what the model's context allows)")
    parser.add_argument("--split-min-tile", type=int, default=defaults.SPLIT_MIN_TILE, metavar="PX",
                        help="a tile whose answer hits the budget is asked again as four overlapping quarters, "
                        f"down to this side (default {defaults.SPLIT_MIN_TILE}; 0 never splits)")
    parser.add_argument("--readers", type=int, default=2, help="threads reading tiles ahead of the model (default 2)")
    parser.add_argument("--bands", type=lambda s: tuple(int(b) for b in s.split(",")), help="1-based bands used as R,G,B, e.g. 3,2,1")
    region = parser.add_mutually_exclusive_group()
    region.add_argument("--window", type=_ints4, metavar="COL,ROW,WIDTH,HEIGHT", help="a pixel window to restrict detection to")
    region.add_argument("--region", type=_floats4, metavar="MINX,MINY,MAXX,MAXY", help="a map extent to restrict detection to")
    parser.add_argument("--region-crs", help="CRS of --region (default: the raster's), e.g. EPSG:4326")
    parser.add_argument("--iou", type=float, help="merge IoU threshold (default 0.1)")
    parser.add_argument("--ios", type=float, help="merge IOS threshold for truncated pieces (default 0.5)")
    parser.add_argument("--merge-by-score", action="store_true", default=None,
                        help="of two sightings of one object keep the better-scored one instead of the one inside "
                        "its tile and larger (off by default: with the demo model it kept the worse box)")
    parser.add_argument("--responses-out", type=Path,
                        help="keep the raw per-tile model responses as JSONL (a folder when there are several rasters)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run from --responses-out: answered tiles are not asked again")
    parser.add_argument("--from-responses", type=Path, help="re-run post-processing from a responses JSONL, without a model")
    parser.add_argument("--dota-out", type=Path,
                        help="also write DOTA label text (image pixels: x1 y1 ... x4 y4 class difficult; no scores)")
    parser.add_argument("--task1-out", type=Path, metavar="FOLDER",
                        help="also write DOTA Task-1 submission files Task1_<class>.txt (image score x1 ... y4, "
                        "image pixels) into this folder, with each object's score")
    parser.add_argument("--score", choices=sorted(DEFINITIONS), default=defaults.SCORE_DEFINITION,
                        help="how an object's confidence score is made from the model's token probabilities "
                        f"(default {defaults.SCORE_DEFINITION}, chosen by bench/score_study.py)")
    add_engine_arguments(parser, required=False)
    parser.set_defaults(run=run)


def build_options(args: argparse.Namespace):
    from ..pipelines.detect import DetectOptions
    from ..tiling import Window

    return DetectOptions.build(
        classes=args.classes,
        form=args.form,
        tile_size=args.tile_size,
        overlap=args.overlap,
        max_mode=args.max_mode,
        max_new_tokens=args.max_new_tokens,
        split_min_tile=args.split_min_tile,
        readers=args.readers,
        bands=args.bands,
        window=Window(*args.window) if args.window else None,
        bounds=args.region,
        bounds_crs=args.region_crs,
        iou=args.iou,
        ios=args.ios,
        merge_by_score=args.merge_by_score,
        score=args.score,
    )


def _is_folder_output(path: Path) -> bool:
    return path.is_dir() or (not path.suffix and str(path).endswith(("/", "\\")))


def run(args: argparse.Namespace) -> int:
    from ..outputs import check_output_path
    from ..pipelines.batch import expand_rasters, plan_batch

    options = build_options(args)
    rasters = expand_rasters(args.raster)
    per_raster = _is_folder_output(args.output)
    if per_raster:
        check_output_path(args.output / "check.gpkg")  # the folder exists and can be written
    else:
        check_output_path(args.output)  # before any model loads: extension, folder, permission
    if args.resume and not args.responses_out:
        raise UserError("--resume continues a run from its responses: give the same --responses-out as the first run.")
    if len(rasters) > 1:
        if args.from_responses or args.dota_out or args.task1_out:
            raise UserError("--from-responses, --dota-out and --task1-out take one raster; run them raster by raster.")
        if args.responses_out and args.responses_out.suffix.lower() == ".jsonl":
            raise UserError("With several rasters, --responses-out is a folder (one JSONL per raster), not a file.")
    plan = plan_batch(rasters, options)
    if args.task1_out is not None and not args.task1_out.is_dir():
        raise UserError(f"--task1-out names a folder for the Task1_<class>.txt files; {args.task1_out} is not one.")
    if len(rasters) == 1 and plan.errors:
        raise UserError(plan.errors[rasters[0]])  # bad raster, bands, region or tiles: before the model loads
    if args.from_responses:
        return _replay(args, options, rasters[0])
    if not args.model:
        raise UserError("Name a model with --model (a folder or Hugging Face id), or replay responses with --from-responses.")
    if len(rasters) > 1 or plan.total_tiles > defaults.LARGE_RUN_TILES:
        print(f"{plan.total_tiles:,} tiles to ask over {len(rasters) - len(plan.errors)} raster(s)"
              + (f"; {len(plan.errors)} cannot be read" if plan.errors else ""), file=sys.stderr)
    responses_dir = None
    if args.responses_out and len(rasters) > 1:
        responses_dir = args.responses_out
        responses_dir.mkdir(parents=True, exist_ok=True)
    engine = load_engine(args)
    outcomes = _detect_all(args, plan, engine, options, responses_dir)
    return _write(args, outcomes, per_raster, options)


def _detect_all(args, plan, engine, options, responses_dir):
    from tqdm import tqdm

    from ..pipelines.batch import RasterOutcome, detect_many
    from ..pipelines.detect import detect

    bar = tqdm(total=plan.total_tiles, unit="tile", desc="detect", file=sys.stderr, dynamic_ncols=True)
    state = {raster: (0, tiles) for raster, tiles in plan.tiles.items()}  # (done, total) per raster

    def progress(raster: Path, done: int, total: int) -> None:
        state[raster] = (done, total)  # the total grows when dense tiles are split
        bar.total = sum(t for _, t in state.values())
        bar.n = sum(d for d, _ in state.values())
        if len(plan.rasters) > 1:
            bar.set_description(f"detect {raster.name}", refresh=False)
        bar.refresh()

    outcomes = []
    try:
        if len(plan.rasters) == 1:
            raster = plan.rasters[0]
            result = detect(raster, engine, options, progress=lambda d, t: progress(raster, d, t),
                            responses_out=args.responses_out, resume=args.resume)
            outcomes.append(RasterOutcome(raster, result=result, responses_path=args.responses_out))
        else:
            outcomes.extend(detect_many(plan, engine, options, responses_dir=responses_dir, resume=args.resume,
                                        progress=progress))
    finally:
        bar.close()
    return outcomes


def _replay(args, options, raster: Path) -> int:
    from ..outputs import write_vector
    from ..pipelines.detect import detect_from_responses

    if args.responses_out or args.resume:
        raise UserError("--from-responses replays a file; drop --responses-out and --resume.")
    result = detect_from_responses(raster, args.from_responses, options)
    _print_warnings(result.warnings)
    write_vector(result.gdf, args.output)
    _write_dota_files(args, result, raster, options)
    print(result.summary())
    print(f"Wrote {args.output} ({result.crs.to_string() if result.crs is not None else 'no CRS'})")
    return 0


def _write_dota_files(args, result, raster: Path, options) -> None:
    """--dota-out (label text) and --task1-out (submission files with scores), in image pixels."""
    from ..outputs import write_dota, write_task1

    if args.dota_out:
        write_dota(args.dota_out, result.quads_img, result.labels)
    if args.task1_out:
        _written, note = write_task1(args.task1_out, raster.stem, result.quads_img, result.labels, result.scores,
                                     options.classes)
        if note:
            _print_warnings([note])
        print(f"Wrote DOTA Task-1 files to {args.task1_out}")


def _print_warnings(warnings) -> None:
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _write(args, outcomes, per_raster: bool, options) -> int:
    from ..outputs import write_vector
    from ..pipelines.batch import combine

    several = len(outcomes) > 1
    failed = [o for o in outcomes if o.error]
    for outcome in outcomes:
        if outcome.error:
            print(f"FAILED {outcome.raster}: {outcome.error}", file=sys.stderr)
            continue
        result = outcome.result
        _print_warnings(f"{outcome.raster.name}: {w}" if several else w for w in result.warnings)
        print(f"{outcome.raster.name}: {result.summary()}" if several else result.summary())
        if per_raster:
            target = args.output / f"{outcome.raster.stem}.gpkg"
            write_vector(result.gdf, target)
            print(f"Wrote {target} ({result.crs.to_string() if result.crs is not None else 'no CRS'})")
    if not per_raster:
        if several:
            gdf, notes = combine(outcomes)
            _print_warnings(notes)
        else:
            gdf = outcomes[0].result.gdf
        write_vector(gdf, args.output)
        crs = gdf.crs.to_string() if gdf.crs is not None else "no CRS"
        print(f"Wrote {args.output} ({len(gdf)} objects, {crs})")
    if not several and outcomes[0].result is not None:
        _write_dota_files(args, outcomes[0].result, outcomes[0].raster, options)
    if args.responses_out:
        print(f"Raw responses: {args.responses_out} (replay with --from-responses, continue with --resume)")
    incomplete = [o for o in outcomes if o.result is not None and o.result.tiles_failed]
    if several:
        print(f"{len(outcomes) - len(failed)} of {len(outcomes)} rasters done"
              + (f"; {len(failed)} failed: {', '.join(o.raster.name for o in failed)}" if failed else ""))
    return 3 if failed or incomplete else 0
