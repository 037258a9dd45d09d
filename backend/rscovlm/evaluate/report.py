"""Presenting evaluation results: a terminal table and a report folder (JSON, CSV, Markdown, PNG).

Each file is written to a temporary name in the target folder and renamed into place, so
a report is never left half-written where a user (or a script) may read it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from ..atomic import atomic_write, atomic_write_with
from ..errors import UserError
from .metrics import AP_KEYS, EvaluationResult

_DESCRIPTIONS = {
    "dota_devkit": "DOTA_devkit: raw polygon IoU {op} {iou}, difficult objects ignored, "
    "VOC07 11-point AP, mAP over the {n} listed classes",
    "mmrotate": "mmrotate: minimum-area-rectangle IoU {op} {iou}, {difficult}, "
    "{mode} AP, mAP over the {n} classes with ground truth",
}


def describe(result: EvaluationResult) -> str:
    """One line saying which convention a set of numbers follows, and how scores were used."""
    if result.convention == "dota_devkit":
        text = _DESCRIPTIONS["dota_devkit"].format(op=">", iou=0.5, n=len(result.mean_over))
    else:
        difficult = (
            "difficult objects ignored" if any(c.difficult_ignored for c in result.per_class)
            else "difficult objects counted"
        )
        text = _DESCRIPTIONS["mmrotate"].format(
            op=">=", iou=0.5, difficult=difficult,
            mode="VOC07 11-point" if result.ap_mode == "11point" else "area (all-point)",
            n=len(result.mean_over),
        )
    if result.scored:
        ranking = "AP ranks detections by their scores"
    else:
        ranking = (
            f"no scores: AP is the mean over {result.seeds} random score orders "
            f"(base seed {result.base_seed})"
        )
    return (
        f"{text}; {ranking}; P/R/F1 at IoU {result.iou} with one-to-one (optimal) matching, "
        "averaged over classes with ground truth."
    )


def scores_line(result: EvaluationResult) -> str | None:
    """What the scores are worth, in one sentence: AP with them against mAP_nc, and the validated F1."""
    if not result.scored:
        return None
    text = (f"scores: mAP50 {_pct(result.map['AP50'])} ranked by the scores against "
            f"{_pm(result.map_nc_mean['AP50'], result.map_nc_std['AP50'])} with random scores (mAP_nc)")
    choice = result.threshold
    if choice is not None and not math.isnan(choice.threshold):
        where = (f"chosen and measured on the same {len(choice.test_images)} image(s)" if choice.same_images else
                 f"chosen on {len(choice.validation_images)} validation image(s), measured on the other "
                 f"{len(choice.test_images)}")
        text += (f"; F1@{result.iou:g} at score >= {choice.threshold:.3f} ({where}): {_pct(choice.f1)} "
                 f"(P {_pct(choice.precision)}, R {_pct(choice.recall)}), against {_pct(choice.confidence_free_f1)} "
                 "keeping every detection on those images")
    return text + "."


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def _pm(mean: float, std: float) -> str:
    return "-" if math.isnan(mean) else f"{100 * mean:.1f} ± {100 * std:.1f}"


def table_rows(result: EvaluationResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows (one per class, then the means) with values in percent."""
    header = [
        "class", "GT", "det", "AP50", "AP75", "AP50:95", "AP50_nc ± std",
        f"P@{result.iou:g}", f"R@{result.iou:g}", f"F1@{result.iou:g}",
    ]
    rows = []
    for c in result.per_class:
        rows.append(
            [
                c.name, str(c.ground_truth), str(c.detections),
                *(_pct(c.ap[k]) for k in AP_KEYS),
                _pm(c.ap_nc_mean["AP50"], c.ap_nc_std["AP50"]),
                _pct(c.precision), _pct(c.recall), _pct(c.f1),
            ]
        )
    rows.append(
        [
            "mean", str(sum(c.ground_truth for c in result.per_class)),
            str(sum(c.detections for c in result.per_class)),
            *(_pct(result.map[k]) for k in AP_KEYS),
            _pm(result.map_nc_mean["AP50"], result.map_nc_std["AP50"]),
            _pct(result.mean_precision), _pct(result.mean_recall), _pct(result.mean_f1),
        ]
    )
    return header, rows


def format_table(result: EvaluationResult) -> str:
    """A fixed-width table for the terminal, titled with its convention."""
    header, rows = table_rows(result)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths))
        )

    rule = "-" * len(line(header))
    body = [line(r) for r in rows[:-1]]
    extra = [text for text in (scores_line(result),) if text]
    if result.threshold is not None:
        extra += [f"note: {n}" for n in result.threshold.notes]
    return "\n".join(
        [f"[{result.convention}] {describe(result)}", "values in %", line(header), rule, *body, rule, line(rows[-1]),
         *extra]
    )


def markdown_table(result: EvaluationResult) -> str:
    header, rows = table_rows(result)
    rows[-1] = [f"**{cell}**" for cell in rows[-1]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_report(
    results: Sequence[EvaluationResult],
    out_dir: str | Path,
    inputs: dict[str, str] | None = None,
    notes: Sequence[str] = (),
) -> list[Path]:
    """Write results.json, per_class.csv, report.md and PNG plots; return the paths written."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot create the report folder {out}: {exc.strerror}. Choose another --out.") from exc
    inputs = dict(inputs or {})
    written: list[Path] = []

    payload = {
        "inputs": inputs,
        "notes": list(notes),
        "results": [r.to_dict() | {"description": describe(r)} for r in results],
    }
    written.append(_atomic_text(out / "results.json", json.dumps(payload, indent=2, ensure_ascii=False) + "\n"))
    written.append(_atomic_text(out / "per_class.csv", _csv_text(results)))

    plots: dict[str, list[str]] = {}
    for r in results:
        plots[r.convention] = []
        for name, draw in ((f"pr_curves_{r.convention}.png", _draw_pr_curves),
                           (f"ap_per_class_{r.convention}.png", _draw_ap_bars)):
            path = _atomic_figure(out / name, lambda fig, r=r, draw=draw: draw(fig, r))
            if path is not None:
                written.append(path)
                plots[r.convention].append(name)

    written.append(_atomic_text(out / "report.md", _markdown(results, inputs, notes, plots)))
    return written


def _csv_text(results: Sequence[EvaluationResult]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    ap_cols = [*AP_KEYS, *(f"{k}_nc_mean" for k in AP_KEYS), *(f"{k}_nc_std" for k in AP_KEYS)]
    writer.writerow(
        ["convention", "class", "ground_truth", "difficult_ignored", "detections", "true_positives",
         "false_positives", "false_negatives", "ignored_detections", *ap_cols, "precision", "recall", "f1"]
    )

    def num(v: float | None) -> str:
        return "" if v is None or math.isnan(v) else f"{v:.6f}"

    for r in results:
        for c in r.per_class:
            writer.writerow(
                [r.convention, c.name, c.ground_truth, c.difficult_ignored, c.detections, c.true_positives,
                 c.false_positives, c.false_negatives, c.ignored_detections,
                 *(num(c.ap[k]) for k in AP_KEYS), *(num(c.ap_nc_mean[k]) for k in AP_KEYS),
                 *(num(c.ap_nc_std[k]) for k in AP_KEYS), num(c.precision), num(c.recall), num(c.f1)]
            )
        writer.writerow(
            [r.convention, "mean", sum(c.ground_truth for c in r.per_class),
             sum(c.difficult_ignored for c in r.per_class), sum(c.detections for c in r.per_class),
             sum(c.true_positives for c in r.per_class), sum(c.false_positives for c in r.per_class),
             sum(c.false_negatives for c in r.per_class), sum(c.ignored_detections for c in r.per_class),
             *(num(r.map[k]) for k in AP_KEYS), *(num(r.map_nc_mean[k]) for k in AP_KEYS),
             *(num(r.map_nc_std[k]) for k in AP_KEYS), num(r.mean_precision), num(r.mean_recall),
             num(r.mean_f1)]
        )
    return buffer.getvalue()


def _markdown(results, inputs: dict[str, str], notes: Sequence[str], plots: dict[str, list[str]]) -> str:
    parts = ["# Oriented detection evaluation", ""]
    for key, value in inputs.items():
        parts.append(f"- **{key}**: `{value}`")
    if notes:
        parts += ["", "## Notes", "", *(f"- {n}" for n in notes)]
    for r in results:
        parts += ["", f"## {r.convention}", "", describe(r), "", "Values in %.", "", markdown_table(r), ""]
        if scores_line(r):
            parts += [scores_line(r)[0].upper() + scores_line(r)[1:], ""]
            parts += [f"Note: {n}" for n in (r.threshold.notes if r.threshold else [])]
        parts += [f"![{name}]({name})" for name in plots.get(r.convention, [])]
    return "\n".join(parts) + "\n"


def _atomic_text(path: Path, text: str) -> Path:
    return atomic_write(path, text, newline="")


def _atomic_figure(path: Path, draw: Callable) -> Path | None:
    """Draw with matplotlib's Agg backend (no display needed); None when matplotlib is absent."""
    try:
        with warnings.catch_warnings():  # a stray system matplotlib makes 3-D axes warn; unused here
            warnings.filterwarnings("ignore", message="Unable to import Axes3D")
            from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(8, 5.5), dpi=100)  # a bare Figure uses Agg and no global state
    draw(fig)
    fig.tight_layout()
    return atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png"))


def _draw_pr_curves(fig, result: EvaluationResult) -> None:
    ax = fig.add_subplot()
    for c in result.per_class:
        if c.ground_truth and len(c.curve_recall):
            # Start at recall 0 so that a one-detection curve is a visible step, not a dot.
            recall = [0.0, *c.curve_recall]
            precision = [c.curve_precision[0], *c.curve_precision]
            ax.step(recall, precision, where="post", marker=".", markersize=3, lw=1.2,
                    label=f"{c.name} (AP50 {100 * c.ap['AP50']:.1f})")
    order = "detector scores" if result.scored else f"random scores, seed {result.base_seed}"
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
           title=f"Precision-recall at IoU {result.iou:g} ({result.convention}, {order})")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, loc="lower left")


def _draw_ap_bars(fig, result: EvaluationResult) -> None:
    ax = fig.add_subplot()
    names = [c.name for c in result.per_class]
    xs = range(len(names))
    width = 0.4
    ax.bar([x - width / 2 for x in xs], [100 * c.ap["AP50"] for c in result.per_class], width, label="AP50")
    ax.bar([x + width / 2 for x in xs], [0 if math.isnan(c.f1) else 100 * c.f1 for c in result.per_class],
           width, label=f"F1@{result.iou:g}")
    ax.set_xticks(list(xs), names, rotation=45, ha="right", fontsize=8)
    ax.set(ylim=(0, 100), ylabel="%", title=f"Per-class AP50 and F1 ({result.convention})")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
