"""Learning curves of model files side by side: validation loss (and training loss, dashed) against
optimizer steps and against training minutes, from the epoch history each model file keeps.

    python benchmarks/learning_curves.py A.lstmidi[=label] B.lstmidi[=label] ... --out curves.png
"""

from __future__ import annotations

import argparse
import json
import zipfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model files, each optionally followed by =LABEL")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--title", default="validation loss (solid) and training loss (dashed)")
    args = ap.parse_args()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for spec in args.models:
        path, _, label = spec.partition("=")
        config = json.loads(zipfile.ZipFile(path).read("config.json"))
        hist = [h for h in config["history"] if "val_loss" in h]
        if not hist:
            continue
        minutes = config["metrics"].get("train_seconds", 0) / 60
        steps = [h["step"] for h in hist]
        x_time = [minutes * (i + 1) / len(hist) for i in range(len(hist))]  # epochs are near-equal in time
        for ax, x in zip(axes, (steps, x_time)):
            (line,) = ax.plot(x, [h["val_loss"] for h in hist], marker=".", label=label or path)
            ax.plot(x, [h["train_loss"] for h in hist], ls="--", color=line.get_color(), alpha=0.6)
        print(
            f"{label or path}: {len(hist)} epochs, {steps[-1]} steps, {minutes:.0f} min, "
            f"best validation loss {min(h['val_loss'] for h in hist):.4f} {config['metrics'].get('unit', '')}"
        )
    axes[0].set_xlabel("optimizer steps")
    axes[1].set_xlabel("training minutes (epochs spread evenly)")
    for ax in axes:
        ax.set_ylabel("nats per token")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(args.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
