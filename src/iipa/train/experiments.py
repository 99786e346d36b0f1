"""The paper's experiments at CPU scale: label noise (Table 2) and architectures (Table 3).

Each configuration is an ordinary training run in its own sub-folder of ``out`` (so an
interrupted experiment resumes where it stopped), evaluated on the test split; results go
to ``results.csv``, ``results.md`` and ``results.svg``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

# Defined without torch (the CLI's parsers show them); re-exported here.
from iipa.constants import ARCHITECTURES as ARCHITECTURES
from iipa.constants import NOISE_LEVELS as NOISE_LEVELS
from iipa.csvsafe import frame_to_csv
from iipa.errors import IIPAError, WeightsError
from iipa.evaluate import evaluate_pairs
from iipa.fileio import atomic_open, write_text
from iipa.train.config import TrainConfig
from iipa.train.runner import train

COLUMNS = ("name", "test_accuracy", "ci95_low", "ci95_high", "test_pairs", "test_ties",
           "best_val_accuracy", "steps", "parameters", "seconds", "error")


def run_one(config: TrainConfig, name: str, *, crops: int = 1) -> dict[str, Any]:
    """Train ``config`` (resuming if its folder holds a run) and evaluate best.pt on the test split."""
    started = time.time()
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row["name"] = name
    try:
        summary = train(config)
    except WeightsError as exc:  # e.g. torchvision ImageNet weights on an offline machine
        row["error"] = str(exc).split(". ")[0]
        return row
    result = evaluate_pairs(summary["best"], config.pairs, config.images, splits=["test"], crops=crops,
                            precision=config.precision)
    test = result["splits"].get("test")
    if test is None or test["n"] == 0:
        raise IIPAError(f"{config.pairs}: no test pairs with images to evaluate on")
    from iipa.model.record import load_model

    model = load_model(summary["best"])
    row.update(test_accuracy=test["accuracy"], ci95_low=test["ci95"][0], ci95_high=test["ci95"][1],
               test_pairs=test["n"], test_ties=test["ties"], best_val_accuracy=summary["best_val_accuracy"],
               steps=summary["steps"], parameters=sum(p.numel() for p in model.parameters()),
               seconds=round(time.time() - started, 1))
    return row


def label_noise(base: TrainConfig, out: str | Path, *, levels: Sequence[float] = NOISE_LEVELS,
                crops: int = 1) -> pd.DataFrame:
    """Table 2: train with q% of the training labels flipped, test on clean test pairs."""
    out = Path(out)
    rows = []
    for q in levels:
        name = f"q={round(100 * q)}%"
        row = run_one(base.replace(label_noise=q, out=str(out / f"noise_{round(100 * q):02d}")), name, crops=crops)
        rows.append({"label_noise": q, **row})
    df = pd.DataFrame(rows)
    write_results(df, out, title="Label noise (paper Table 2): test pairwise accuracy", x="label_noise")
    return df


def architectures(base: TrainConfig, out: str | Path, *, backbones: Sequence[str] = ARCHITECTURES,
                  crops: int = 1) -> pd.DataFrame:
    """Table 3: the same pairs and schedule with different backbones."""
    out = Path(out)
    rows = [run_one(base.replace(backbone=b, out=str(out / b)), b, crops=crops) for b in backbones]
    df = pd.DataFrame(rows)
    write_results(df, out, title="Architectures (paper Table 3): test pairwise accuracy", x="name")
    return df


def markdown_table(df: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.4f}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_results(df: pd.DataFrame, out: Path, *, title: str, x: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "results.csv", "w", newline="") as fh:
        frame_to_csv(df, fh)
    write_text(out / "results.md", f"## {title}\n\n" + markdown_table(df) + "\n![results](results.svg)\n")
    plot(df, out / "results.svg", title=title, x=x)


def plot(df: pd.DataFrame, path: Path, *, title: str, x: str) -> Path:
    """Test accuracy per setting with its 95 % interval, against chance (SVG, :mod:`iipa.plots`)."""
    from iipa.plots import bar_chart_svg, write_svg

    ok = df[df["test_accuracy"].notna()]
    acc = ok["test_accuracy"].astype(float)
    errors = list(zip(acc - ok["ci95_low"].astype(float), ok["ci95_high"].astype(float) - acc))
    labels = [f"{100 * float(v):g}%" for v in ok[x]] if x == "label_noise" else [str(v) for v in ok[x]]
    svg = bar_chart_svg(labels, acc.tolist(), title=title, ylabel="test pairwise accuracy (95% CI)", errors=errors,
                        ylim=(0.4, 1.0), hline=(0.5, "chance"),
                        xlabel="flipped training labels q" if x == "label_noise" else x.replace("_", " "))
    return write_svg(svg, path)
