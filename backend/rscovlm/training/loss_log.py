"""The loss log (JSONL + CSV) and loss curve (PNG) written next to the trained model.

They are rebuilt from the Trainer's own log history at every logging step, so a resumed
run (whose history is restored from its checkpoint) continues the same files instead of
duplicating or losing steps.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from transformers import TrainerCallback

from rscovlm.atomic import atomic_open, atomic_write_with

__all__ = ["LossLogCallback", "write_loss_log", "plot_loss_curve", "read_loss_log"]

COLUMNS = ("step", "epoch", "loss", "eval_loss", "learning_rate", "grad_norm")


def _rows(history: list[dict]) -> list[dict]:
    rows = []
    for entry in history:
        if "loss" not in entry and "eval_loss" not in entry:
            continue
        rows.append({key: entry.get(key) for key in COLUMNS})
    return rows


def write_loss_log(history: list[dict], out_dir: Path) -> list[dict]:
    rows = _rows(history)
    with atomic_open(out_dir / "loss_log.jsonl") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    with atomic_open(out_dir / "loss_log.csv", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return rows


def read_loss_log(out_dir: str | Path) -> list[dict]:
    path = Path(out_dir) / "loss_log.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_loss_curve(rows: list[dict], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
    evals = [(r["step"], r["eval_loss"]) for r in rows if r.get("eval_loss") is not None]
    if not train and not evals:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="training loss")
    if evals:
        ax.plot(*zip(*evals), marker="o", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy on answer tokens")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        atomic_write_with(path, fig.savefig)
    finally:
        plt.close(fig)
    return path


class LossLogCallback(TrainerCallback):
    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero:
            write_loss_log(state.log_history, self.out_dir)

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            rows = write_loss_log(state.log_history, self.out_dir)
            plot_loss_curve(rows, self.out_dir / "loss_curve.png")
