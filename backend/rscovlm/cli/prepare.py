"""``rscovlm prepare``: build a fine-tuning set from labelled imagery."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="build a training set (tiles + conversations) from DOTA labels or a raster and a vector layer",
        description="Cut labelled imagery into model-sized tiles (objects assigned by the 0.7 area "
        "rule, empty tiles kept), write each tile as a PNG at the model-input size and its "
        "conversation in the model's exact detection format to train.jsonl / val.jsonl, and "
        "print the counts per class (also in summary.json).",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the training set into")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dota", metavar="DIR", help="a DOTA-format dataset folder (images/ + labelTxt/)")
    source.add_argument("--raster", nargs="+", metavar="R", help="georeferenced raster(s), each with its --labels")
    parser.add_argument("--labels", nargs="+", metavar="V",
                        help="vector layer(s) of object polygons (GPKG/SHP/GeoJSON), any CRS; one per raster")
    parser.add_argument("--layer", default=None, help="layer name inside a multi-layer GeoPackage")
    parser.add_argument("--class-field", default="class", metavar="NAME",
                        help="the vector field holding each object's class (default: class)")
    parser.add_argument("--tile-size", type=int, default=512, metavar="PX", help="tile side in pixels (default 512)")
    parser.add_argument("--overlap", type=int, default=100, metavar="PX", help="tile overlap in pixels (default 100)")
    parser.add_argument("--val-fraction", type=float, default=0.1, metavar="F",
                        help="share of tiles held out for validation (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/validation split (default 0)")
    parser.add_argument("--classes", nargs="+", default=None, metavar="NAME",
                        help="classes to train on and list in the prompt (default: every class in the labels)")
    parser.add_argument("--form", choices=["quad", "json", "hbb"], default="quad",
                        help="answer form the model learns: quad (oriented polygons, RSCoVLM's own; default), "
                        "hbb (x1,y1,x2,y2: half the coordinates, no angle) or json; detect with the same --form")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="cut N images at once, in separate processes (default 1; the output is the same)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def _class_list(values: list[str] | None) -> tuple[str, ...] | None:
    if not values:
        return None
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def run(args: argparse.Namespace) -> int:
    from rscovlm.errors import UserError
    from rscovlm.training.prepare import PrepareOptions, format_summary, prepare_dataset
    from rscovlm.training.sources import dota_images, vector_image

    if args.raster and not args.labels:
        raise UserError("--raster needs --labels: the vector layer (GPKG/SHP) holding the object polygons.")
    if args.dota and args.labels:
        raise UserError("--labels goes with --raster; a DOTA dataset carries its labels in labelTxt/.")
    if args.dota:
        images = dota_images(args.dota)
    else:
        if len(args.raster) != len(args.labels):
            raise UserError(
                f"{len(args.raster)} rasters but {len(args.labels)} label layers were given; give one "
                "--labels layer per --raster, in the same order."
            )
        images = [vector_image(r, v, class_field=args.class_field, layer=args.layer)
                  for r, v in zip(args.raster, args.labels)]
        names = [image.name for image in images]
        if len(set(names)) != len(names):
            raise UserError("Two rasters share a file name; rename them so that their tiles get distinct names.")
    options = PrepareOptions(
        tile_size=args.tile_size, overlap=args.overlap, val_fraction=args.val_fraction,
        seed=args.seed, classes=_class_list(args.classes), form=args.form,
    )
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1; got {args.workers}.")
    summary = prepare_dataset(images, args.out_dir, options, show_progress=not args.quiet, workers=args.workers)
    print(format_summary(summary))
    print(f"wrote {summary.out_dir}/train.jsonl, val.jsonl, summary.json and images/")
    return 0
