"""`lstmidi benchmark speed`: the measuring code itself (the figures live in docs/benchmarks.md)."""

import json
import sys

import numpy as np
import pytest

from conftest import make_score, run, run_main
from lstmidi import speed
from lstmidi.models import build_model
from lstmidi.trainer import precision


def test_flops_count_every_lstm_and_linear_layer():
    model = build_model({"name": "tokennet", "embed": 4, "hidden": 6, "layers": 2}, {"vocab_size": 20})
    # layer 0: 2 * 4 gates * 6 * (4 + 6); layer 1: 2 * 4 * 6 * (6 + 6); head: 2 * 6 * 20
    assert speed.flops_per_step_forward(model) == 480 + 576 + 240


def test_tutorial_note_extraction_reads_the_notes(tmp_path):
    pytest.importorskip("pretty_midi")
    path = tmp_path / "a.mid"
    make_score([(0, 480, 60, 90), (480, 240, 64, 80), (960, 960, 67, 70)]).dump_midi(path)  # 120 bpm: 0.5 s a beat
    notes = speed.tutorial_notes(path)
    np.testing.assert_allclose(
        notes, [[60, 0.0, 0.5, 0.0, 0.5], [64, 0.5, 0.75, 0.5, 0.25], [67, 1.0, 2.0, 0.5, 1.0]], atol=1e-6
    )


def test_samplers_measured_on_a_small_model():
    model = build_model({"name": "tokennet", "embed": 8, "hidden": 32, "layers": 2}, {"vocab_size": 30}).eval()
    stateful = speed.stateful_rate(model, bos=1, batch=2, steps=60)
    rerun = speed.rerun_rate(model, vocab=30, batch=2, window=100, steps=20)
    assert stateful > rerun > 0  # one LSTM step per new step beats re-running 100 steps for it


def test_markdown_section_is_replaced_and_the_rest_kept(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nPolyphonic table.\n")
    speed.update_markdown(doc, f"{speed.BEGIN}\nfirst\n{speed.END}")
    speed.update_markdown(doc, f"{speed.BEGIN}\nsecond\n{speed.END}")
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nPolyphonic table.\n") and "second" in text and "first" not in text
    assert text.count(speed.BEGIN) == 1


def test_benchmark_speed_cli_writes_json_and_markdown(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nKept.\n")
    out = run(
        ["benchmark", "speed", "--suite", "train", "--quick", "--json", tmp_path / "speed.json", "--markdown", doc]
    ).output
    result = json.loads((tmp_path / "speed.json").read_text())
    assert result["machine"]["cores"] >= 1 and result["quick"] is True
    names = [r["name"] for r in result["rows"]]
    assert names[0].startswith("float32 matmul") and any(n.startswith("flagship 2 x 512") for n in names)
    assert all(r["value"] > 0 for r in result["rows"])
    [share] = [t for t in result["targets"] if "share of the float32 matmul" in t["target"]]
    assert share["goal"] == 85 and share["met"] == (share["measured"] >= 85)
    rows = {r["name"].split(" (")[0]: r for r in result["rows"]}  # each rate says the arithmetic it ran in
    assert f"in {precision('auto')} = " in rows["flagship 2 x 512"]["note"] and precision("auto") in share["target"]
    assert "in 32-true = " in rows["flagship 2 x 512, float32"]["note"]
    assert ("bfloat16 matmul" in rows) == (precision("auto") == "bf16-mixed")
    overhead = [t for t in result["targets"] if t["target"].startswith("train step vs plain PyTorch")]
    assert len(overhead) == 2 and all(t["goal"] == 1.1 and t["met"] == (t["measured"] <= 1.1) for t in overhead)
    assert "tutorial" in overhead[0]["target"] and "flagship 2 x 512" in overhead[1]["target"]
    assert "≤ 1.1 x" in doc.read_text()
    assert "training 2 x 512" in out and "Kept." in doc.read_text() and "### train" in doc.read_text()


def test_generate_suite_measures_the_batch_gain_from_alternating_pairs(tmp_path):
    run(["benchmark", "speed", "--suite", "generate", "--quick", "--json", tmp_path / "speed.json"])
    result = json.loads((tmp_path / "speed.json").read_text())
    rows = {r["name"]: r for r in result["rows"]}
    one, four = rows["3-s pieces with grammar and ending, batch 1"], rows["3-s pieces with grammar and ending, batch 4"]
    assert one["value"] > 0 and four["value"] > 0 and "median of 3 alternating pairs" in four["note"]
    [gain] = [t for t in result["targets"] if t["target"] == "batch 32 vs batch 1, notes/s"]
    assert gain["measured"] > 0 and f"{gain['measured']:.1f}x batch 1" in four["note"]
    [cli] = [t for t in result["targets"] if t["target"].startswith("30 s of music")]
    assert cli["measured"] > 0


def test_unknown_suite_is_named(monkeypatch, capsys):
    code, err = run_main(["benchmark", "speed", "--suite", "ingset"], monkeypatch, capsys)
    assert code == 1 and "unknown suite(s) ingset" in err and "ingest" in err


def test_peak_memory_of_a_process():
    assert (
        60
        < speed.peak_rss_mb([sys.executable, "-c", "b = bytearray(80 * 2**20); b[::4096] = b'x' * len(b[::4096])"])
        < 400
    )


@pytest.mark.parametrize("preset", sorted(speed.PLAIN_LOSSES))
def test_the_plain_pytorch_loss_is_lstmidis_objective(preset):
    """The overhead benchmark compares like with like: its hand-written loss equals lstmidi's objective."""
    import torch

    from lstmidi.batches import batch_objective
    from lstmidi.config import load_preset
    from lstmidi.encodings import build_encoding
    from lstmidi.kinds import kind_of

    cfg = load_preset(preset, ["model.hidden=16", "train.window=6"])
    enc = build_encoding(cfg.encoding)
    sizes = {"vocab_size": 40} if preset == "flagship" else enc.sizes
    model = build_model(cfg.model, sizes).eval()
    g = torch.Generator().manual_seed(0)
    if preset == "flagship":
        x = torch.randint(40, (3, 7), generator=g)
    else:
        x = torch.stack([torch.randint(30, 90, (3, 7)), torch.rand(3, 7), torch.rand(3, 7) - 0.2], -1)
    mask = torch.ones(3, 6, dtype=torch.uint8)
    mask[1, 4:] = 0  # a window that ends early
    batch = (x[:, :-1], x[:, 1:], mask)
    ours, _, _ = batch_objective(model, batch, kind_of(enc).name, cfg.train.loss)
    plain = speed.PLAIN_LOSSES[preset](model, *batch, cfg.train.loss)
    assert float(plain.detach()) == pytest.approx(float(ours.detach()), rel=1e-5)


def test_the_overhead_benchmark_writes_only_into_its_work_folder(tmp_path, monkeypatch):
    from lstmidi.corpus import bundled_corpus, find_midi_files

    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    data = [p for p, _ in find_midi_files([bundled_corpus("bach")])[:6]]
    work = tmp_path / "work"
    work.mkdir()
    o = speed.train_overhead(
        "tutorial", ["train.batch_size=4", "train.window=8", "model.hidden=16"], 2, 1, 1, work, data
    )
    assert o["ms"] > 0 and o["plain_ms"] > 0 and o["ratio"] == pytest.approx(o["ms"] / o["plain_ms"])
    assert not list((tmp_path / "cwd").iterdir())  # no checkpoints/ or lightning_logs/ in the current folder


def test_unknown_peer_is_named(monkeypatch, capsys):
    code, err = run_main(["benchmark", "speed", "--peer", "caffe"], monkeypatch, capsys)
    assert code == 1 and "unknown peer 'caffe'" in err and "keras" in err


def test_the_peer_comparison_scores_the_note_after_each_window():
    from lstmidi.peer import held_out, last_real

    target = np.array([[60, 0.5, 0.25], [62, 0.0, 1.0]])
    flat = held_out(np.zeros((2, 128)), np.array([0.5, -0.1]), np.array([0.25, 1.0]), target)
    assert flat["pitch_nll"] == pytest.approx(np.log(128))  # uniform logits
    # 0.05 x NLL + step: (0 + (-0.1 - 0)^2 + 10 x 0.1) / 2 + duration: 0
    assert flat["tutorial_loss"] == pytest.approx(0.05 * np.log(128) + (0.01 + 1.0) / 2)
    y = np.arange(2 * 4 * 3).reshape(2, 4, 3)
    last, notes = last_real(y, np.array([[1, 1, 1, 1], [1, 1, 0, 0]]))
    assert last.tolist() == [3, 1] and notes.tolist() == [y[0, 3].tolist(), y[1, 1].tolist()]


def test_the_peer_comparison_alternates_the_sides_and_reports_the_ratio_target(monkeypatch, tmp_path):
    from lstmidi import peer, speed

    calls = []
    ms = {"lstmidi": [12.0, 30.0, 13.0], "keras": [15.0, 14.0, 16.0]}

    def side(name, batches, work):
        calls.append(name)
        fields = {"pitch_nll": 2.0, "tutorial_loss": 0.1, "note_ms": 0.3, "peak_mb": 500.0}
        return {"batch_ms": ms[name][calls.count(name) - 1], **fields}

    monkeypatch.setattr(peer, "side", side)
    rows, targets = peer.compare(False, tmp_path, speed.row, speed.target)
    assert calls == ["lstmidi", "keras"] * 3
    assert rows[0]["value"] == 13.0 and rows[1]["value"] == 15.0  # the medians
    assert [(t["measured"], t["goal"], t["met"]) for t in targets] == [(13.0 / 15.0, 1.0, True)]
