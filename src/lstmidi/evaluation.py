"""Held-out scores: a model's NLL on held-out pieces (per step and per note), the baselines every model
is compared with on the same split and in the same unit, and the evaluation report (tables and plots)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .baselines import markov_baseline_nll, music_cost_baselines, repeat_nll, unigram_nll  # noqa: F401 (public here)
from .encodings import Encoding
from .files import figure, save_figure
from .kinds import kind_of


def baselines(encoding: Encoding, train: list[np.ndarray], held_out: list[np.ndarray]) -> dict[str, float]:
    """The baselines for this encoding's kind, in the unit its models report (`lstmidi.kinds`)."""
    return kind_of(encoding).baselines(encoding, train, held_out)


def note_features(score) -> dict[str, np.ndarray]:
    """Pitch, step (seconds between successive onsets) and duration (seconds) of all pitched notes."""
    s = score.to("second")
    rows = [t.notes.numpy() for t in s.tracks if not t.is_drum and len(t.notes)]
    if not rows:
        return {"pitch": np.zeros(0), "step": np.zeros(0), "duration": np.zeros(0)}
    time = np.concatenate([r["time"] for r in rows])
    order = np.argsort(time, kind="stable")
    time = time[order]
    return {
        "pitch": np.concatenate([r["pitch"] for r in rows])[order].astype(np.float64),
        "step": np.diff(time, prepend=time[:1]),
        "duration": np.concatenate([r["duration"] for r in rows])[order].astype(np.float64),
    }


def held_out_nll(loaded, pieces: list[np.ndarray], notes: int, batch_size: int = 64) -> dict:
    """Loss of a loaded model (`lstmidi.modelfile.LoadedModel`) on encoded held-out `pieces`, computed as
    training validates: windows of `train.window` steps tiling each piece once, every predicted step
    counted once, so on the validation split it reproduces the model card's validation loss.

    Returns `per_step` (the training unit: nats per frame for piano rolls, nats per token for event
    tokens, the weighted loss per note for note models; see `unit`), `steps` scored, `notes` (those of
    the held-out files, given by the caller), `per_note` = total loss / `notes`, which compares models
    with different encodings, and the extra per-step metrics of note models (e.g. `pitch_nll`).
    """
    from .batches import evaluate_loader, make_loader
    from .errors import LstmidiError

    if not pieces:
        raise LstmidiError("no held-out pieces to score")
    cfg = loaded.preset.train
    span = cfg.window + loaded.model.context  # a seq2seq encoder reads `context` steps first
    means, steps = evaluate_loader(
        loaded.model, make_loader(pieces, span, None, batch_size, False, cfg.seed), loaded.encoding.kind, cfg.loss
    )
    total = means.pop("loss") * steps
    return {
        "per_step": total / steps,
        "per_note": total / notes if notes else float("nan"),
        "steps": round(steps),
        "notes": int(notes),
        "unit": loaded.config.get("metrics", {}).get("unit", "loss per step"),
        **means,
    }


def token_type_nll(loaded, pieces: list[np.ndarray], notes: int, batch_size: int = 64) -> dict[str, dict]:
    """A token model's held-out loss split by the type of the predicted token ('Pitch', 'Duration',
    'Position', 'Bar', 'Program', 'Velocity', ...), scored on the same windows as `held_out_nll`:
    {type: {"tokens": count, "per_token": nats per token of that type, "per_note": its nats / `notes`}},
    largest share first. The per-note shares add up to `held_out_nll`'s per_note."""
    import torch

    from .batches import make_loader

    cfg = loaded.preset.train
    types = np.array(loaded.encoding.token_types())
    names, type_of = np.unique(types, return_inverse=True)  # (vocab,) index of each id's type
    total, count = np.zeros(len(names)), np.zeros(len(names))
    was_training = loaded.model.training
    loaded.model.eval()
    for x, y, mask in make_loader(pieces, cfg.window, None, batch_size, False, cfg.seed):
        with torch.no_grad():
            out, _ = loaded.model(x)
            nll = -torch.log_softmax(out.float(), -1).gather(-1, y.long()[..., None])[..., 0]  # (batch, time)
        keep = mask.bool().numpy()
        t = type_of[y.numpy()[keep]]
        total += np.bincount(t, weights=nll.numpy()[keep].astype(np.float64), minlength=len(names))
        count += np.bincount(t, minlength=len(names))
    loaded.model.train(was_training)
    order = np.argsort(-total)
    return {
        str(names[i]): {
            "tokens": int(count[i]),
            "per_token": float(total[i] / count[i]),
            "per_note": float(total[i] / notes) if notes else float("nan"),
        }
        for i in order
        if count[i]
    }


# ---- the evaluation report (lstmidi evaluate) ------------------------------------------------------


def to_json(results: dict) -> str:
    """`results` as strict JSON: NaN and infinities become null."""
    import json

    def clean(x):
        if isinstance(x, float):
            return x if np.isfinite(x) else None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(results), indent=1, allow_nan=False)


def _pm(d: dict, digits: int = 3) -> str:
    return "n/a" if not d["n"] else f"{d['mean']:.{digits}f} ± {d['sd']:.{digits}f}"


def render_report(results: dict) -> str:
    """report.md of `lstmidi evaluate`: likelihood, metric and originality tables, with the plots
    written by `write_report` beside it."""
    from .metrics import SCALARS

    r, nll, held, gen = results, results["nll"], results["held_out"], results["generated"]
    orig = r["originality"]
    lines = [
        f"# lstmidi evaluation of `{r['model']}`",
        "",
        f"Encoding `{r['encoding']}`; data {r['data']} ({r['corpus']['train']} training, {r['corpus']['valid']} "
        "validation, "
        f"{r['corpus']['test']} test pieces). Generated: {gen['pieces']} pieces of {gen['seconds']:g} s, seed "
        f"{gen['seed']}, "
        f"without primer. Real: the {held['pieces']} {held['split']} pieces, cut to their first {held['seconds']:g} s. "
        f"Evaluated in {r['seconds']:.0f} s.",
        "",
        "## Held-out likelihood",
        "",
        f"| split | pieces | steps scored | notes | {nll['unit']} | per note |",
        "|---|---|---|---|---|---|",
        f"| {held['split']} | {held['pieces']} | {nll['steps']} | {nll['notes']} | {nll['per_step']:.4f} | "
        f"{nll['per_note']:.4f} |",
        "",
        "Per note = the total loss over the held-out files / their notes, so models with different encodings compare.",
        "",
    ]
    if nll.get("by_type"):
        lines += [
            "By the type of the predicted token:",
            "",
            "| token type | tokens | nats per token | nats per note |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {t} | {v['tokens']} | {v['per_token']:.3f} | {v['per_note']:.3f} |" for t, v in nll["by_type"].items()
        ]
        lines += [""]
    from .quality import gate_table

    q = r["quality"]
    lines += [
        "## Quality gate",
        "",
        f"Generated pieces against the last {held['seconds']:g} s of the {held['pieces']} held-out pieces (so "
        "that both "
        "end where a piece ends) and a random-pitch control (the same real pieces, every pitch drawn at random from "
        "the piece's range): the floor and the ceiling of each figure. Means over pieces; "
        f"N = {q['voices']}, the real pieces' usual most notes at once. "
        f"**{'Passed.' if q['passed'] else 'Not passed.'}**"
        + (" The pitch content is closer to the random control than to real music." if q["near_random"] else ""),
        "",
        *gate_table(q),
        "",
        "Pitch measures pass at 3/4 of the way from the random control to real music (endings: 3/5); "
        "tell-apart = cross-validated balanced accuracy of a logistic regression on the per-piece measures.",
        "",
        "## Musical metrics (after Yang & Lerch 2018)",
        "",
        "| metric | generated | real | overlap area | KL(real ‖ generated), nats |",
        "|---|---|---|---|---|",
    ]
    for name, what in SCALARS.items():
        m = r["metrics"][name]
        lines.append(
            f"| {what} | {_pm(m['generated'])} | {_pm(m['real'])} | {m['overlap_area']:.3f} | "
            f"{m['kl_real_generated']:.3f} |"
        )
    lines += [
        "",
        "Mean ± sd over pieces. Overlap area: of the two sets' Gaussian kernel-density estimates "
        "(1 = same distribution, 0 = disjoint). Time in beats; polyphony counted at note onsets.",
        "",
        "![metrics](metrics.png)",
        "",
        "![pitch classes, note lengths and inter-onset intervals](histograms.png)",
        "",
        f"## Originality against the {orig['training_pieces']} training pieces",
        "",
        "| set | longest copied stretch (notes) | max | 8-note n-grams found in training |",
        "|---|---|---|---|",
    ]
    for key, label in (("generated", "generated"), ("real", f"real ({held['split']})")):
        o = orig[key]
        lines.append(
            f"| {label} | {_pm(o['longest_copy'], 1)} | {o['longest_copy']['max']:.0f} | {_pm(o['ngram8_share'])} |"
        )
    lines += [
        "",
        "Notes are compared transposition-invariantly (pitch interval and onset delta, in 1/12 beat, from the "
        "previous note; chords from low to high). Real held-out music is the reference: a model is as original "
        "as real music when its figures are no higher.",
        "",
        "![originality](originality.png)",
        "",
    ]
    return "\n".join(lines)


def plot_value_histograms(
    values: dict[str, dict[str, list[float]]], titles: dict[str, str], path: Path, columns: int = 4
) -> None:
    """One panel per name: histograms of the generated and the real per-piece values, on shared bins."""
    import textwrap

    rows = -(-len(values) // columns)
    fig, axes = figure((3.4 * columns, 2.9 * rows), dpi=90, nrows=rows, ncols=columns, squeeze=False)
    for ax, (name, sets) in zip(axes.flat, values.items()):
        g = np.array([v for v in sets["generated"] if v is not None and np.isfinite(v)])
        r = np.array([v for v in sets["real"] if v is not None and np.isfinite(v)])
        both = np.concatenate([g, r])
        bins = np.histogram_bin_edges(both, bins=12) if len(both) and np.ptp(both) > 0 else 1
        ax.hist(r, bins=bins, alpha=0.55, density=True, label="real")
        ax.hist(g, bins=bins, alpha=0.55, density=True, label="generated")
        ax.set_title(textwrap.fill(titles[name], 42), fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(values) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def plot_mean_histograms(histograms: dict[str, dict[str, list[float]]], path: Path) -> None:
    """Side-by-side bars of the mean pitch-class, note-length and inter-onset-interval histograms."""
    from .metrics import DURATION_LABELS

    panels = [
        ("pitch_class", "pitch classes", ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]),
        ("note_length", "note lengths", DURATION_LABELS),
        ("ioi", "inter-onset intervals", DURATION_LABELS),
    ]
    fig, axes = figure((14, 3.4), dpi=90, ncols=3)
    for ax, (key, title, labels) in zip(axes, panels):
        x = np.arange(len(labels))
        for shift, name in ((-0.2, "real"), (0.2, "generated")):
            ax.bar(x + shift, histograms[name][key] or np.zeros(len(labels)), width=0.4, label=name)
        ax.set_xticks(x, labels, fontsize=7, rotation=0 if key == "pitch_class" else 30)
        ax.set_title(f"{title} (share, mean over pieces)", fontsize=9)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def write_report(results: dict, folder: Path) -> Path:
    """Write report.md, metrics.png, histograms.png and originality.png into `folder`; returns report.md."""
    from .corpus import atomic_write_text
    from .metrics import SCALARS

    folder.mkdir(parents=True, exist_ok=True)
    plot_value_histograms({k: m["values"] for k, m in results["metrics"].items()}, SCALARS, folder / "metrics.png")
    plot_mean_histograms(results["histograms"], folder / "histograms.png")
    orig = results["originality"]
    plot_value_histograms(
        {k: {s: orig[s]["values"][k] for s in ("generated", "real")} for k in ("longest_copy", "ngram8_share")},
        {"longest_copy": "longest copied stretch (notes)", "ngram8_share": "share of 8-note n-grams in training"},
        folder / "originality.png",
        columns=2,
    )
    atomic_write_text(folder / "report.md", render_report(results))
    return folder / "report.md"
