"""The polyphonic piano-roll benchmark (Boulanger-Lewandowski, Bengio & Vincent, ICML 2012).

JSB Chorales and Nottingham as `.mat` files holding `traindata`, `validdata`, `testdata`: one (frames, 88)
0/1 array per piece, column 0 = MIDI pitch 21. `run()` trains a piano-roll preset on the train split
(model selection on the validation split only: the checkpoint with the lowest validation loss), then
scores whole pieces exactly as the published numbers are computed:

* **NLL**, nats per frame: frame t+1 predicted from frames 0..t with the state carried through the whole
  piece, -log p summed over the 88 keys (for a joint model, the exact log-probability of the frame),
  summed over the predicted frames (frame 0 is never scored) and divided by their number in the split.
* **Frame accuracy** (Bay et al. 2009): sum over frames of TP / sum over frames of (TP + FP + FN), the
  predicted frame being each key with p >= 0.5 (a joint model decides key by key, lowest first, each
  given the keys already decided).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import Preset, validate_preset
from .corpus import Corpus, summarize
from .encodings import build_encoding
from .errors import LstmidiError
from .evaluation import markov_baseline_nll
from .modelfile import load_model

DATASETS = {"jsb": ("JSB_Chorales.mat", 1), "nottingham": ("Nottingham.mat", 2)}  # file, frames per quarter note
SPLITS = {"train": "traindata", "valid": "validdata", "test": "testdata"}
LOW_PITCH, KEYS = 21, 88

# Published test NLL, nats per frame (from the benchmark's README; Bai et al. 2018, Krishnan et al. 2017).
PUBLISHED = [
    ("per-key Markov baseline", 10.49, 5.15),
    ("RNN (tanh)", 8.91, 4.05),
    ("LSTM", 8.45, 3.29),
    ("GRU", 8.43, 3.46),
    ("TCN", 8.10, 3.07),
    ("STORN", 6.91, 2.85),
    ("DMM-Aug", 6.29, 2.68),
    ("RNN-NADE", 5.19, 2.31),
]


def default_data_dir() -> Path | None:
    """$LSTMIDI_POLYPHONIC, else `shared/data/polyphonic` beside the source checkout or the current folder."""
    if os.environ.get("LSTMIDI_POLYPHONIC"):
        return Path(os.environ["LSTMIDI_POLYPHONIC"])
    here = Path(__file__).resolve()
    for base in (*here.parents[2:4], Path.cwd(), Path.cwd().parent):
        candidate = base / "shared" / "data" / "polyphonic"
        if candidate.is_dir():
            return candidate
    return None


def mat_path(dataset: str, data: str | Path | None = None) -> Path:
    """The .mat file to read: `data` itself (a .mat file or a folder holding the dataset's file)."""
    if dataset not in DATASETS:
        raise LstmidiError(f"unknown dataset {dataset!r} (choose from: {', '.join(DATASETS)})")
    name = DATASETS[dataset][0]
    folder = Path(data) if data else default_data_dir()
    if folder is None:
        raise LstmidiError(
            f"no polyphonic benchmark data found: give --data PATH (a {name} file or its folder), "
            "or set LSTMIDI_POLYPHONIC"
        )
    path = folder / name if folder.is_dir() else folder
    if not path.is_file():
        raise LstmidiError(f"{path}: file not found")
    return path


def dataset_name(dataset: str, path: Path) -> str:
    """The name of the data set in `path`: a known one ("jsb", "nottingham") when the file is its file,
    else the file's stem, so that another `.mat` of the same layout is never labelled as JSB."""
    for name, (file, _) in DATASETS.items():
        if path.name == file:
            return name
    return path.stem


def load_mat(path: str | Path) -> dict[str, list[np.ndarray]]:
    """{split: [(frames, 88) float32 0/1 arrays]}; errors name the file and what is wrong with it."""
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except Exception as err:
        raise LstmidiError(f"{path}: not a readable .mat file ({err})") from None
    out = {}
    for split, key in SPLITS.items():
        if key not in mat:
            raise LstmidiError(f"{path}: no {key!r} array (the benchmark layout has traindata, validdata, testdata)")
        pieces = [np.asarray(p, dtype=np.float32) for p in np.ravel(mat[key])]
        for i, p in enumerate(pieces):
            if p.ndim != 2 or p.shape[1] != KEYS or not np.isin(p, (0, 1)).all():
                raise LstmidiError(f"{path}: {key}[{i}] has shape {p.shape}; expected (frames, {KEYS}) of 0/1")
        out[split] = [p for p in pieces if len(p) >= 2]
    return out


def benchmark_preset(preset: Preset, dataset: str) -> Preset:
    """The preset with its piano roll set to the benchmark's grid: 88 keys from A0, no onset columns."""
    if preset.encoding.get("name") != "pianoroll":
        raise LstmidiError(
            f"preset {preset.name!r} uses encoding {preset.encoding.get('name')!r}; the polyphonic "
            "benchmark needs a piano-roll preset (musicgenerator, midinet, endecell)"
        )
    raw = preset.model_dump()
    raw["encoding"].update(
        timing="beats", steps_per_quarter=DATASETS[dataset][1], low=LOW_PITCH, keys=KEYS, onsets=False
    )
    return validate_preset(raw, where=f"preset {preset.name!r} for the {dataset} benchmark")


@torch.no_grad()
def score_pieces(model: torch.nn.Module, pieces: list[np.ndarray], batch_size: int = 16) -> dict[str, float]:
    """Whole-piece NLL (nats per predicted frame) and frame accuracy, as the module doc defines them."""
    model.eval()
    nll, frames, tp, errors = 0.0, 0, 0.0, 0.0
    for start in range(0, len(pieces), batch_size):
        batch = pieces[start : start + batch_size]
        longest = max(len(p) for p in batch)
        x = torch.zeros(len(batch), longest, batch[0].shape[1])
        mask = torch.zeros(len(batch), longest - 1, dtype=torch.bool)
        for i, p in enumerate(batch):
            x[i, : len(p)] = torch.from_numpy(p)
            mask[i, : len(p) - 1] = True
        out, _ = model(x[:, :-1])  # predictions for frames 1..T-1
        target = x[:, 1:]
        per_frame = model.frame_nll(out, target)  # independent keys, or the model's joint NLL (endecell)
        guess = model.sample_frame(out[mask], mode="threshold")
        nll += float(per_frame[mask].sum())
        frames += int(mask.sum())
        truth = target[mask]
        tp += float((guess * truth).sum())
        errors += float((guess != truth).sum())  # FP + FN
    return {"nll": nll / frames, "frame_accuracy": tp / (tp + errors) if tp + errors else 0.0, "frames": frames}


@dataclass
class BenchmarkResult:
    dataset: str
    preset: str
    test_nll: float
    valid_nll: float
    frame_accuracy: float
    markov_nll: float
    seconds: float
    epochs: int
    model_path: Path
    settings: dict | None = None  # the preset's model and train sections as run, and the command

    def as_json(self) -> dict:
        return {
            "dataset": self.dataset,
            "preset": self.preset,
            "test_nll": self.test_nll,
            "valid_nll": self.valid_nll,
            "frame_accuracy": self.frame_accuracy,
            "markov_test_nll": self.markov_nll,
            "seconds": self.seconds,
            "epochs": self.epochs,
            "model": str(self.model_path),
            "settings": self.settings,
        }


def run(
    dataset: str,
    preset: Preset,
    out: str | Path,
    *,
    data: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    command: str | None = None,
) -> BenchmarkResult:
    """Train `preset` on the benchmark's train split in run folder `out` and score valid and test.

    `dataset` picks the file when `data` is a folder or absent, and the grid (frames per quarter note)
    the piano rolls are decoded with; the result is named after the file (`dataset_name`)."""
    from .training import train  # Lightning is imported only when a benchmark runs

    started = time.time()
    path = mat_path(dataset, data)
    splits = load_mat(path)
    preset = benchmark_preset(preset, dataset)
    encoding = build_encoding(preset.encoding)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:20]
    corpus = Corpus(
        pieces=splits,
        names={s: [f"{path.name}:{s}[{i}]" for i in range(len(p))] for s, p in splits.items()},
        report=[{"name": path.name, "path": str(path), "status": "loaded", "reason": ""}],
        manifest_hash=digest,
        encoding=encoding,
    )
    corpus.summary = summarize(corpus)
    result = train(preset, [path], out, force=force, progress=progress, command=command, corpus=corpus)
    model = load_model(result.model_path).model
    valid, test = score_pieces(model, splits["valid"]), score_pieces(model, splits["test"])
    return BenchmarkResult(
        dataset_name(dataset, path),
        preset.name,
        test["nll"],
        valid["nll"],
        test["frame_accuracy"],
        markov_baseline_nll(splits["train"], splits["test"]),
        round(time.time() - started, 1),
        result.epochs,
        result.model_path,
        {"command": command, "model": preset.model, "train": preset.train.model_dump(mode="json")},
    )


def table(result: BenchmarkResult) -> str:
    """Markdown table: the published rows (only for the data sets whose published figures are known:
    jsb and nottingham) and this run."""
    col = {"jsb": 1, "nottingham": 2}.get(result.dataset)
    lines = [f"| model ({result.dataset}) | test NLL (nats/frame) | valid NLL | frame accuracy |", "|---|---|---|---|"]
    if col is not None:
        lines += [f"| {row[0]} (published) | {row[col]:.2f} | | |" for row in PUBLISHED]
    lines.append(f"| per-key Markov baseline (this run) | {result.markov_nll:.2f} | | |")
    lines.append(
        f"| **lstmidi {result.preset}** ({result.epochs} epochs, {result.seconds:.0f} s) | **{result.test_nll:.2f}** "
        f"| {result.valid_nll:.2f} | {result.frame_accuracy:.3f} |"
    )
    return "\n".join(lines)
