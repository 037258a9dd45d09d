"""``rscovlm evaluate``: DOTA Task-1 metrics of predictions against ground truth.

Prints one table per convention (DOTA_devkit and/or mmrotate, which give different numbers
on the same files) and, with ``--out``, writes JSON, CSV, a Markdown report and plots.
"""

from __future__ import annotations

import argparse
import logging

from ..errors import UserError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score oriented detections against ground truth (AP, mAP_nc, P/R/F1)",
        description="Score oriented detections against ground truth under the DOTA_devkit and/or "
        "mmrotate conventions: AP at IoU 0.5, 0.75 and 0.5:0.95, mAP_nc (random scores averaged "
        "over seeds, for models without confidences) and one-to-one precision, recall and F1.",
    )
    parser.add_argument("--pred", required=True, help="predictions: GPKG/SHP/GeoJSON, a DOTA txt folder or "
                        "file, Task1_<class>.txt files, or a responses .jsonl from rscovlm detect")
    parser.add_argument("--truth", required=True, help="ground truth: GPKG/SHP/GeoJSON or a DOTA labelTxt folder")
    parser.add_argument("--classes", nargs="+", metavar="CLASS",
                        help="classes to evaluate, e.g. --classes plane 'small vehicle' or 'plane,ship'; "
                        "'dota' means the 15 DOTA-v1.0 classes (default: the classes in the truth)")
    parser.add_argument("--convention", choices=["both", "dota_devkit", "mmrotate"], default="both")
    parser.add_argument("--seeds", type=int, default=10, help="random score orders averaged for mAP_nc (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the random score orders (default 0)")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU threshold of precision/recall/F1 (default 0.5)")
    parser.add_argument("--validation-fraction", type=float, default=0.5, metavar="F",
                        help="with scored predictions: the share of images (chosen by a hash of their ids, so the "
                        "split is fixed) on which the score threshold of the best F1 is chosen; F1 at that "
                        "threshold is measured on the other images (default 0.5)")
    parser.add_argument("--ap-mode", choices=["11point", "area"], default="11point",
                        help="mmrotate's AP integration (DOTA_devkit is always 11-point)")
    parser.add_argument("--out", help="folder for results.json, per_class.csv, report.md and PNG plots")
    parser.add_argument("--class-field", default="class", help="class field of vector files (default 'class')")
    parser.add_argument("--difficult-field", default="difficult", help="difficult flag field of vector truth")
    parser.add_argument("--score-field", help="score field of vector predictions (default: 'score' when present)")
    parser.add_argument("--image-field", help="field naming each object's image, when a vector file covers several")
    parser.add_argument("--raster", help="the raster a responses .jsonl came from (to compare with map truth)")
    parser.set_defaults(run=run)


def _class_list(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    from ..formats.prompts import DOTA_CLASSES, normalize_class_name

    names: list[str] = []
    for value in values:
        if value.strip().lower() == "dota":
            names.extend(DOTA_CLASSES)
            continue
        names.extend(normalize_class_name(part) for part in value.split(",") if part.strip())
    return list(dict.fromkeys(names)) or None


def run(args: argparse.Namespace) -> int:
    from ..evaluate.loaders import align_predictions, load_predictions, load_truth
    from ..evaluate.metrics import evaluate
    from ..evaluate.report import format_table, write_report

    if args.seeds < 1:
        raise UserError("--seeds must be at least 1: mAP_nc averages AP over that many random score orders.")
    if not 0.0 < args.iou < 1.0:
        raise UserError(f"--iou must lie between 0 and 1 (e.g. 0.5); got {args.iou}.")
    if not 0.0 < args.validation_fraction < 1.0:
        raise UserError(f"--validation-fraction must lie between 0 and 1 (e.g. 0.5); got {args.validation_fraction}.")
    classes = _class_list(args.classes)

    truth = load_truth(args.truth, args.class_field, args.difficult_field, args.image_field)
    predictions = load_predictions(
        args.pred, args.class_field, args.score_field, args.image_field,
        classes=classes, raster=args.raster, space=truth.space,
    )
    predictions = align_predictions(predictions, truth)
    if classes is None and truth.count == 0:
        raise UserError(
            f"The ground truth ({truth.description}) holds no objects, so there is no class to "
            "evaluate; name the classes with --classes."
        )
    notes = [*truth.notes, *predictions.notes]
    for note in notes:
        log.info("note: %s", note)

    conventions = ["dota_devkit", "mmrotate"] if args.convention == "both" else [args.convention]
    results = [
        evaluate(
            truth.objects, predictions.objects, convention, classes=classes, iou=args.iou,
            seeds=args.seeds, base_seed=args.seed,
            ap_mode=args.ap_mode if convention == "mmrotate" else None,
            validation_fraction=args.validation_fraction,
        )
        for convention in conventions
    ]
    print(f"truth: {truth.description}; predictions: {predictions.description}")
    for result in results:
        print()
        print(format_table(result))
        if result.unlisted_predictions or result.unlisted_ground_truth:
            print(
                f"left out: {result.unlisted_predictions} prediction(s) and "
                f"{result.unlisted_ground_truth} ground-truth object(s) of classes not in the list"
            )
    if args.out:
        written = write_report(
            results, args.out,
            inputs={"predictions": str(args.pred), "truth": str(args.truth), "iou": str(args.iou),
                    "seeds": str(args.seeds), "base seed": str(args.seed),
                    "validation fraction": str(args.validation_fraction)},
            notes=notes,
        )
        print(f"\nreport written to {args.out}: " + ", ".join(p.name for p in written))
    return 0
