"""lstmidi studio (`lstmidi serve`): the safety helpers directly, then the page in a real Chromium.

The browser tests start `lstmidi serve` in a subprocess on a free port with a temporary runs folder and
drive Debian's Chromium (`apt-get install chromium`; `make install` does it as root) with Playwright.
They skip only when Chromium is missing. Screenshots of both tabs go to a temporary folder, or to the folder
named by LSTMIDI_SCREENSHOTS (`LSTMIDI_SCREENSHOTS=docs/images make test` refreshes the README's pictures).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
from symusic import Note, Score, Tempo, Track

from conftest import four_voices, make_score, write_corpus
from lstmidi.errors import LstmidiError
from lstmidi.studio import UploadError, run_name, safe_name, stage_uploads


def screenshot(page, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("LSTMIDI_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name), full_page=True)
    assert (folder / name).stat().st_size > 10_000


SCALE = [60, 62, 64, 65, 67, 69, 71, 72]  # the primer: a C major scale in quarter notes at 120 qpm (4 s)


def scale_midi(path: Path) -> Path:
    score = Score(480)
    score.tempos.append(Tempo(0, qpm=120.0))
    track = Track(name="scale", program=0)
    for i, pitch in enumerate(SCALE):
        track.notes.append(Note(i * 480, 480, pitch, 80))
    score.tracks.append(track)
    score.dump_midi(path)
    return path


# ---- safety helpers (no browser) ----------------------------------------------------------------------


def test_safe_names_never_leave_the_folder():
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("..\\..\\windows\\evil.mid") == "evil.mid"
    assert safe_name("/abs/path/.hidden.mid") == "hidden.mid"
    assert safe_name("..") == "file" and safe_name("") == "file"
    assert safe_name("Bach – Chorale №1 (a).mid") == "Bach_Chorale_No1_a_.mid"
    assert len(safe_name("x" * 500 + ".mid")) <= 80 and safe_name("x" * 500 + ".mid").endswith(".mid")
    assert run_name("../my run", "musicgenerator") == "my_run"
    assert run_name("", "musicgenerator").startswith("musicgenerator-") and run_name("_studio", "x") == "studio"
    with pytest.raises(LstmidiError, match="reserved"):
        run_name("checkpoints", "musicgenerator")


def test_uploads_are_checked_by_content(tmp_path):
    good = write_corpus(tmp_path / "in", n=2)
    fake = tmp_path / "in" / "fake.mid"
    fake.write_text("this is not MIDI")
    with pytest.raises(UploadError, match="fake.mid: not a MIDI file"):
        stage_uploads([*good, fake], tmp_path / "out1")
    renamed = tmp_path / "in" / "no-suffix"  # MIDI is recognised by content, whatever the name
    shutil.copy(good[0], renamed)
    staged = stage_uploads([renamed], tmp_path / "out2")
    assert [p.name for p in staged.files] == ["no-suffix.mid"] and staged.files[0].read_bytes()[:4] == b"MThd"


def test_zip_uploads_traversal_and_bombs(tmp_path):
    midi = write_corpus(tmp_path / "in", n=2)
    archive = tmp_path / "music.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(midi[0], "../../evil.mid")
        zf.write(midi[1], "folder/sub/b.mid")
        zf.writestr("readme.txt", "notes about the music")
    staged = stage_uploads([archive], tmp_path / "out")
    assert sorted(p.name for p in staged.files) == ["evil.mid", "folder_sub_b.mid"]
    assert all(p.parent == tmp_path / "out" for p in staged.files)
    assert staged.ignored == ["music.zip/readme.txt: not MIDI"]

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("huge.mid", b"MThd" + bytes(20 * 2**20))  # 20 MB of zeros compress ~1000:1
    with pytest.raises(UploadError, match="bomb"):
        stage_uploads([bomb], tmp_path / "out-bomb")
    assert not list((tmp_path / "out-bomb").iterdir())

    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(2001):
            zf.writestr(f"{i}.mid", b"")
    with pytest.raises(UploadError, match="too many entries"):
        stage_uploads([many], tmp_path / "out-many")

    notzip = tmp_path / "broken.zip"
    notzip.write_bytes(b"PK\x03\x04" + b"\0" * 50)
    with pytest.raises(UploadError, match="broken.zip"):
        stage_uploads([notzip], tmp_path / "out-broken")


def test_uploaded_model_files_are_checked(tmp_path):
    from lstmidi.studio import Studio

    studio = Studio(tmp_path / "runs")
    text = tmp_path / "model.lstmidi"
    text.write_text("not a model")
    with pytest.raises(UploadError, match="model.lstmidi: not an lstmidi model file"):
        studio.add_uploaded_model(text)
    fake = tmp_path / "fake.lstmidi"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr("config.json", "{}")
    with pytest.raises(UploadError, match="fake.lstmidi"):
        studio.add_uploaded_model(fake)
    assert not list((studio.home / "models").iterdir())
    assert [v for _, v in studio.model_choices()] == ["bundled", "bundled:quartets"]
    assert studio.model_path("bundled:quartets").name == "quartets.lstmidi"
    with pytest.raises(LstmidiError, match="no such model"):
        studio.model_path("../../etc/passwd")


def roll_model(path: Path) -> Path:
    """An untrained tiny piano-roll model file (preset musicgenerator): not a four-voice model."""
    from lstmidi.config import load_preset
    from lstmidi.encodings import build_encoding
    from lstmidi.modelfile import save_model
    from lstmidi.models import build_model

    preset = load_preset("musicgenerator", ["model.hidden=8", "model.layers=1"])
    encoding = build_encoding(preset.encoding)
    model = build_model(preset.model, encoding.sizes)
    return save_model(path, encoding=encoding, model=model, preset=preset, metrics={}, command="test")


def test_uploaded_zip_bomb_and_nan_models_are_refused(tmp_path):
    """The studio's model upload goes through the same bounded loader: a 1 MB zip bomb (1 GB config.json)
    and a model with NaN weights are refused with the reason, and nothing is kept."""
    from lstmidi.studio import Studio
    from modelbytes import members, nan_model_weights, zip_with_bomb

    good = roll_model(tmp_path / "good.lstmidi")
    bomb = zip_with_bomb(
        tmp_path / "bomb.lstmidi", {"weights.safetensors": members(good)["weights.safetensors"]}, "config.json", 1024
    )
    studio = Studio(tmp_path / "runs")
    with pytest.raises(UploadError, match=r"^bomb.lstmidi: refused: config.json would unpack to 1,024 MB"):
        studio.add_uploaded_model(bomb)
    with pytest.raises(UploadError, match=r"^nan.lstmidi: damaged model file \(weights.safetensors: \S+ holds NaN"):
        studio.add_uploaded_model(nan_model_weights(good, tmp_path / "nan.lstmidi"))
    assert not list((studio.home / "models").iterdir())


def test_studio_generation_options_are_checked_before_loading(tmp_path, monkeypatch):
    from lstmidi.studio import Studio, generate_pieces

    studio = Studio(tmp_path / "runs")
    monkeypatch.setattr(Studio, "load", lambda *a: pytest.fail("a model was loaded before the options were checked"))
    base = dict(
        model="bundled",
        model_upload=None,
        primer=None,
        primer_seconds=None,
        seconds=10,
        temperature=1.0,
        top_p=0.9,
        key=None,
        programs=None,
        seed=0,
        num=1,
    )
    for change, message in (
        ({"temperature": float("nan")}, r"--temperature nan: a finite number above 0"),
        ({"top_p": 0.0}, r"--top-p 0: a probability mass above 0"),
        ({"programs": [999]}, r"--programs 999: 999 is not a General MIDI program"),
    ):
        with pytest.raises(LstmidiError, match=message):
            generate_pieces(studio, **{**base, **change})


# ---- Harmonise: a tiny four-voice model, shared by the state tests and the page ---------------------------

TINY_CHORALE = [
    "model.embed=8",
    "model.hidden=24",
    "model.center=16",
    "train.window=32",
    "train.hop=8",
    "train.lr=0.01",
    "train.epochs=2",
]
MELODY = [(0, 480, 72), (480, 240, 74), (720, 240, 76), (960, 960, 77), (1920, 480, 76)]  # ticks at 480 tpq


def melody_midi(path: Path) -> Path:
    make_score(MELODY).dump_midi(path)
    return path


def drums_midi(path: Path) -> Path:
    make_score([(i * 240, 120, 36 + i % 3) for i in range(16)], drum=True).dump_midi(path)
    return path


def soprano(midi: Path | bytes | Score) -> list[tuple[float, float, int]]:
    score = midi if isinstance(midi, Score) else Score.from_midi(midi) if isinstance(midi, bytes) else Score(midi)
    track = next(t for t in score.to("quarter").tracks if t.name == "Soprano")
    return sorted((round(n.time, 4), round(n.duration, 4), n.pitch) for n in track.notes)


MELODY_QUARTERS = [(t / 480, d / 480, p) for t, d, p in MELODY]


@pytest.fixture(scope="module")
def chorale_model(tmp_path_factory) -> Path:
    """A four-voice model (preset chorale, tiny) trained in seconds on 10 four-voice pieces and the first held-out
    Bach chorale (so that its voice ranges hold that chorale's soprano: the tests harmonise it)."""
    from lstmidi.config import load_preset
    from lstmidi.studio.state import held_out_chorale, held_out_chorales
    from lstmidi.training import train

    root = tmp_path_factory.mktemp("chorale")
    data = root / "data"
    data.mkdir()
    for i in range(10):
        four_voices(i, bars=4).dump_midi(data / f"c{i}.mid")
    shutil.copy(held_out_chorale(held_out_chorales()[0]), data / "bach.mid")
    cache = os.environ.get("LSTMIDI_CACHE")
    os.environ["LSTMIDI_CACHE"] = str(root / "cache")
    try:
        result = train(load_preset("chorale", TINY_CHORALE), [data], root / "run", progress=False)
    finally:
        os.environ.pop("LSTMIDI_CACHE") if cache is None else os.environ.__setitem__("LSTMIDI_CACHE", cache)
    return Path(result.model_path)


@pytest.fixture
def no_bundled_chorale(monkeypatch, tmp_path):
    """As when this installation has no bundled chorale model (whether or not it has one)."""
    import lstmidi.api

    real = lstmidi.api.bundled_path
    monkeypatch.setattr(
        lstmidi.api, "bundled_path", lambda name: tmp_path / "missing.lstmidi" if name == "chorale" else real(name)
    )


def harmony_studio(tmp_path: Path, chorale_model: Path):
    """A Studio whose runs folder holds the tiny chorale model (run `voices4`) and a piano-roll model."""
    from lstmidi.studio import Studio

    studio = Studio(tmp_path / "runs")
    (studio.runs / "voices4").mkdir()
    shutil.copy(chorale_model, studio.runs / "voices4" / "model.lstmidi")
    (studio.runs / "rolls").mkdir()
    roll_model(studio.runs / "rolls" / "model.lstmidi")
    return studio


HARMONY = dict(model="voices4/model.lstmidi", melody=None, chorale=None, voices=["S"], seed=0, num=1)
HARMONY |= dict(temperature=None, iterations=2)


def harmonize_pieces_(studio, **change):
    """harmonize_pieces with the HARMONY request, changed by `change`."""
    from lstmidi.studio.state import harmonize_pieces

    return harmonize_pieces(studio, **{**HARMONY, **change})


def test_held_out_chorales_are_the_test_split_of_the_bundled_chorales():
    from lstmidi.config import load_preset
    from lstmidi.corpus import bundled_corpus, split_of
    from lstmidi.studio.state import held_out_chorale, held_out_chorales

    names = held_out_chorales()
    data = load_preset("chorale").data
    everything = sorted(p.name for p in bundled_corpus("bach").glob("*.mid"))
    assert list(names) == [n for n in everything if split_of(n, data.valid_fraction, data.test_fraction) == "test"]
    assert 0.05 < len(names) / len(everything) < 0.15  # the preset's 10% test split
    assert held_out_chorale(names[0]) == bundled_corpus("bach") / names[0]
    train_name = next(n for n in everything if n not in names)
    for bad in (train_name, "../../../etc/passwd", "/etc/passwd"):
        with pytest.raises(LstmidiError, match="not one of the held-out chorales"):
            held_out_chorale(bad)


def test_only_four_voice_models_are_offered_for_harmonising(tmp_path, chorale_model, no_bundled_chorale):
    from lstmidi.studio.state import is_four_voice

    studio = harmony_studio(tmp_path, chorale_model)
    assert is_four_voice(studio.runs / "voices4" / "model.lstmidi")
    assert not is_four_voice(studio.runs / "rolls" / "model.lstmidi")
    text = studio.runs / "text.lstmidi"
    text.write_text("not a model")
    assert not is_four_voice(text) and not is_four_voice(tmp_path / "nowhere.lstmidi")
    choices = studio.harmonize_choices()
    assert choices == [
        ("bundled chorale model (four voices) — not installed", "bundled:chorale"),
        ("run: voices4", "voices4/model.lstmidi"),
    ]
    assert studio.harmonize_default() == "voices4/model.lstmidi"  # the bundled one is missing
    assert {v for _, v in studio.model_choices()} >= {"voices4/model.lstmidi", "rolls/model.lstmidi"}


def test_harmonize_pieces_keeps_the_melody_and_writes_every_file(tmp_path, chorale_model):
    from lstmidi.studio.state import harmony_report

    studio = harmony_studio(tmp_path, chorale_model)
    upload = melody_midi(tmp_path / "My tune (1).mid")
    result = harmonize_pieces_(studio, melody=str(upload), num=2, seed=3)
    assert result["source"] == "My_tune_1_.mid" and Path(result["model"]).name == "model.lstmidi"
    assert len(result["pieces"]) == 2
    for piece in result["pieces"]:
        midi = Path(piece["midi"])
        assert midi.parent == Path(result["folder"]) and midi.parent.parent == studio.home / "generated"
        assert Path(piece["wav"]).read_bytes()[:4] == b"RIFF" and Path(piece["png"]).stat().st_size > 1000
        assert [t.name for t in Score(midi).tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
        assert soprano(midi) == MELODY_QUARTERS  # the melody note for note
    assert result["chorale"] is None
    report = harmony_report(result["pieces"][0]["midi"])
    assert report.startswith("| measure | this version |\n|---|---|\n| key (Krumhansl–Schmuckler) |")
    assert "| consonant vertical intervals at onsets | " in report and "Bach" not in report
    again = harmonize_pieces_(studio, melody=str(upload), num=2, seed=3)
    assert [Path(p["midi"]).read_bytes() for p in again["pieces"]] == [
        Path(p["midi"]).read_bytes() for p in result["pieces"]
    ]  # the same seed, the same music


def test_harmonize_a_held_out_chorale_keeps_bachs_soprano(tmp_path, chorale_model):
    from lstmidi.quality import harmony
    from lstmidi.studio.state import harmony_report, held_out_chorale, held_out_chorales

    studio = harmony_studio(tmp_path, chorale_model)
    name = held_out_chorales()[0]
    result = harmonize_pieces_(studio, chorale=name, iterations=1)
    bach = studio.load(studio.model_path(HARMONY["model"])).encoding.quantize(Score(held_out_chorale(name)))
    assert result["source"] == result["chorale"] == name
    assert soprano(Path(result["pieces"][0]["midi"])) == soprano(bach)
    report = harmony_report(result["pieces"][0]["midi"], name).splitlines()
    ours, theirs = harmony(Score(result["pieces"][0]["midi"])), harmony(Score(held_out_chorale(name)))
    assert report[0] == "| measure | this version | Bach's own |"
    assert f"| key (Krumhansl–Schmuckler) | {ours['key']} | {theirs['key']} |" in report
    assert f"| share of notes in the key's scale | {ours['in_scale']:.3g} | {theirs['in_scale']:.3g} |" in report


def test_harmonize_pieces_errors_name_the_upload_not_the_server(tmp_path, chorale_model, no_bundled_chorale):
    studio = harmony_studio(tmp_path, chorale_model)
    chords = tmp_path / "chords.mid"
    make_score([(0, 480, 60), (0, 480, 64), (480, 480, 62), (480, 480, 65)]).dump_midi(chords)
    fake = tmp_path / "fake.mid"
    fake.write_text("not MIDI")
    melody = str(melody_midi(tmp_path / "m.mid"))
    (studio.runs / "broken").mkdir()
    (studio.runs / "broken" / "model.lstmidi").write_text("a damaged model file")
    messages = []
    for change, error, message in (
        ({"melody": str(drums_midi(tmp_path / "beat.mid"))}, LstmidiError, r"^beat.mid: only drum notes"),
        (
            {"melody": str(chords), "voices": ["S", "B"]},
            LstmidiError,
            r"^chords.mid: 2 given voices need 2 pitched tracks; it has 1$",
        ),
        ({"melody": str(fake)}, UploadError, r"^fake.mid: not a MIDI file"),
        (
            {"melody": melody, "model": "rolls/model.lstmidi"},
            LstmidiError,
            r"^rolls/model.lstmidi: harmonising needs a four-voice model \(preset chorale\)",
        ),
        ({"melody": melody, "model": "bundled:chorale"}, LstmidiError, "the bundled chorale model is not installed"),
        ({"melody": melody, "model": "broken/model.lstmidi"}, LstmidiError, r"^broken/model.lstmidi: not an lstmidi"),
    ):
        with pytest.raises(error, match=message) as info:
            harmonize_pieces_(studio, **change)
        messages.append(str(info.value))
    assert not any(str(tmp_path) in m for m in messages), messages  # no server path in the page
    assert not list((studio.home / "generated").iterdir())  # nothing left behind


def test_harmonize_options_are_checked_before_loading(tmp_path, monkeypatch):
    from lstmidi.studio import Studio

    studio = Studio(tmp_path / "runs")
    monkeypatch.setattr(Studio, "load", lambda *a: pytest.fail("a model was loaded before the options were checked"))
    melody = str(melody_midi(tmp_path / "m.mid"))
    for change, message in (
        ({"voices": []}, "tick at least one of S, A, T, B"),
        ({"voices": ["S", "A", "T", "B"]}, "nothing is left to write"),
        ({"num": 5}, "number of versions: 1 to 4"),
        ({"iterations": 101}, "iterations: at most 100"),
        ({"temperature": float("nan")}, r"--temperature nan: a finite number above 0"),
        ({"melody": None}, "upload a melody"),
        ({"melody": None, "chorale": "../x.mid"}, "not one of the held-out chorales"),
    ):
        with pytest.raises(LstmidiError, match=message):
            harmonize_pieces_(studio, **{"melody": melody, **change})


# ---- the page in Chromium ------------------------------------------------------------------------------

CHROMIUM = next(
    (
        p
        for p in (
            os.environ.get("LSTMIDI_CHROMIUM"),
            shutil.which("chromium"),
            "/usr/bin/chromium",
            shutil.which("chromium-browser"),
        )
        if p and Path(p).is_file()
    ),
    None,
)
browser_test = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is missing: apt-get install chromium "
    "(make install does it when run as root), or set LSTMIDI_CHROMIUM",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, chorale_model):
    tmp = tmp_path_factory.mktemp("studio")
    (tmp / "runs" / "voices4").mkdir(parents=True)  # the tiny four-voice model, offered in Harmonise
    shutil.copy(chorale_model, tmp / "runs" / "voices4" / "model.lstmidi")
    port = _free_port()
    env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(tmp / "gradio"),
        "LSTMIDI_CACHE": str(tmp / "cache"),
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    log = (tmp / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lstmidi.cli", "serve", "--port", str(port), "--runs", str(tmp / "runs")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 90
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"lstmidi serve did not start:\n{(tmp / 'server.log').read_text()[-3000:]}")
        time.sleep(0.3)
    yield {"url": url, "tmp": tmp, "runs": tmp / "runs", "log": tmp / "server.log"}
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "the studio tests need playwright: pip install -c constraints.txt -e '.[dev,studio]' (make install)"
        )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    """A fresh page for every test (the server, and so its runs folder and training job, is shared): no test
    depends on what an earlier one left in the page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(server["url"])
    page.wait_for_selector("#gen-button")
    yield page
    context.close()


def _fetch(page, url: str):
    response = page.request.get(url)
    assert response.status == 200, url
    return response


def _midi_links(page, piece: int = 1) -> list[str]:
    return [
        a.get_attribute("href")
        for a in page.query_selector_all(f"#piece-{piece}-files a")
        if (a.get_attribute("href") or "").endswith(".mid")
    ]


def _set_number(page, selector: str, value) -> None:
    field = page.locator(f"{selector} input[type=number]").first
    field.fill(str(value))
    field.press("Tab")


def _wait_for_value(page, selector: str, value: str) -> None:
    page.wait_for_function("([s, v]) => document.querySelector(s)?.value === v", arg=[selector, value])


def _fill_text(page, selector: str, text: str) -> None:
    page.locator(f"{selector} textarea, {selector} input").first.fill(text)


def _generate(page, previous: list[str]) -> tuple[str, Score]:
    page.click("#gen-button")
    page.wait_for_function(
        "prev => { const a = [...document.querySelectorAll('#piece-1-files a')]"
        ".map(x => x.getAttribute('href') || '').filter(h => h.endsWith('.mid'));"
        " return a.length > 0 && !prev.includes(a[0]); }",
        arg=previous,
    )
    url = _midi_links(page)[0]
    body = _fetch(page, url).body()
    assert body[:4] == b"MThd"
    return url, Score.from_midi(body)


@browser_test
def test_generate_listen_download(page, server, tmp_path):
    _set_number(page, "#gen-seconds", 10)
    started = time.time()
    _url, score = _generate(page, [])
    audio = page.wait_for_selector("#piece-1-audio audio[src]", state="attached")
    print(f"generate -> audio element: {time.time() - started:.1f} s")
    wav = _fetch(page, audio.get_attribute("src"))
    assert wav.headers["content-type"] in ("audio/wav", "audio/x-wav", "audio/wave")
    assert wav.body()[:4] == b"RIFF" and wav.body()[8:12] == b"WAVE" and len(wav.body()) > 100_000
    assert page.eval_on_selector("#piece-1-audio audio", "a => a.error === null")
    roll = page.wait_for_selector("#piece-1-roll img[src]")
    page.wait_for_function("img => img.complete && img.naturalWidth > 200", arg=roll)
    assert score.note_num() > 10
    end = score.to("second").end()
    assert 5 < end < 25, end  # 10 s asked: the bundled model ends its piece near the target
    # sheet music (lstmidi.render.render_score: one SVG, the MusicXML among the downloads) and the measures
    # follow the audio
    page.wait_for_selector("#piece-1-sheet img, #piece-1-sheet .sheet-error")
    page.wait_for_selector("#piece-1-metrics :text('pitch range')")
    assert "copied from the training data" in page.inner_text("#piece-1-metrics")
    assert "share of notes in the key's scale" in page.inner_text("#piece-1-metrics")
    assert not page.query_selector("#piece-1-sheet .sheet-error"), page.inner_text("#piece-1-sheet")
    svg = _fetch(page, page.url + page.get_attribute("#piece-1-sheet img", "src")).body()
    assert svg.lstrip().startswith(b"<svg") and b"</svg>" in svg and b"Acoustic Grand Piano" in svg
    xml = page.wait_for_selector("#piece-1-files a[href$='.musicxml']").get_attribute("href")
    xml = _fetch(page, xml).body()
    assert b"score-partwise" in xml and b"<staves>2</staves>" in xml  # the bundled model's piano: a grand staff
    screenshot(page, "studio-generate.png", tmp_path)


@browser_test
def test_primer_is_continued(page, server, tmp_path):
    primer = scale_midi(tmp_path / "scale.mid")
    page.set_input_files("#gen-primer input[type=file]", str(primer))
    page.wait_for_selector("#gen-status :text('primer scale.mid: 8 notes')")
    _url, score = _generate(page, _midi_links(page))
    tpq = score.ticks_per_quarter
    notes = sorted((n.time / tpq, n.pitch) for t in score.tracks for n in t.notes)
    assert notes[: len(SCALE) - 1] == [(float(i), p) for i, p in enumerate(SCALE[:-1])]
    assert (float(len(SCALE) - 1), SCALE[-1]) in notes
    assert len(notes) > len(SCALE)  # and it goes on
    page.click("#gen-primer button[aria-label='Clear']")


@browser_test
def test_non_midi_upload_gives_an_error(page, server, tmp_path):
    fake = tmp_path / "notes.mid"
    fake.write_text("these are my notes, not a MIDI file")
    page.set_input_files("#gen-primer input[type=file]", str(fake))
    toast = page.wait_for_selector(".toast-body:has-text('not a MIDI file')")
    assert "notes.mid" in toast.inner_text() and "Traceback" not in page.content()
    page.click(".toast-body button.toast-close")
    page.click("#gen-primer button[aria-label='Clear']")


@browser_test
def test_train_tiny_model_and_use_it(page, server, tmp_path):
    files = write_corpus(tmp_path / "corpus", n=3)
    page.get_by_role("tab", name="Train").click()
    page.set_input_files("#train-files input[type=file]", [str(f) for f in files])
    page.wait_for_selector("#train-report-summary :text('3 files')")
    assert page.inner_text("#train-report").count("loaded") >= 3
    _set_number(page, "#train-epochs", 2)
    assert page.input_value("#train-preset input") == "flagship"  # the default preset, as in `lstmidi train`
    page.click("#train-preset input")
    page.get_by_role("option", name="musicgenerator").click()  # a tiny piano-roll model trains in seconds
    tiny = [
        "model.hidden=16",
        "model.layers=1",
        "train.window=16",
        "train.hop=8",
        "train.batch_size=8",
        "train.primer_steps=8",
        "train.primers=2",
    ]
    _fill_text(page, "#train-settings", "\n".join(tiny))
    _fill_text(page, "#train-name", "tiny")
    page.click("#train-start")
    page.wait_for_selector("#train-status :text('tiny: finished')", timeout=90_000)
    assert "now in Generate's model list" in page.inner_text("#train-status")
    page.wait_for_selector("#train-curve img[src]")
    assert (server["runs"] / "tiny" / "model.lstmidi").is_file()
    assert (server["runs"] / "_studio" / "data" / "tiny").is_dir()
    screenshot(page, "studio-train.png", tmp_path)

    page.get_by_role("tab", name="Generate").click()
    page.click("#gen-model input")
    page.get_by_role("option", name="run: tiny").click()
    _url, score = _generate(page, _midi_links(page))
    assert score.note_num() >= 0  # a 1-epoch model may write little, but a valid MIDI file
    status = page.inner_text("#gen-status")
    assert "model.lstmidi" in status


@browser_test
def test_one_training_run_at_a_time_cancel_and_bad_settings(page, server, tmp_path):
    files = write_corpus(tmp_path / "corpus", n=3)
    page.get_by_role("tab", name="Train").click()
    page.set_input_files("#train-files input[type=file]", [str(f) for f in files])
    page.wait_for_selector("#train-report-summary :text('3 files')")
    page.click("#train-preset input")
    page.get_by_role("option", name="musicgenerator").click()
    _fill_text(page, "#train-settings", "model.hidden=16\nmodel.layers=1\ntrain.window=16")
    _set_number(page, "#train-epochs", 1000)
    _fill_text(page, "#train-name", "long")
    page.click("#train-start")
    page.wait_for_selector("#train-status :text('long: running')")
    _fill_text(page, "#train-name", "second")
    page.click("#train-start")
    toast = page.wait_for_selector(".toast-body:has-text('one at a time')")
    page.click(".toast-body button.toast-close")
    page.click("#train-cancel")
    page.wait_for_selector("#train-status :text('long: cancelled')")
    assert not (server["runs"] / "second").exists()

    _set_number(page, "#train-epochs", 1)
    _fill_text(page, "#train-settings", "model.hidden=banana")
    _fill_text(page, "#train-name", "bad")
    page.click("#train-start")
    toast = page.wait_for_selector(".toast-body:has-text('valid integer')")
    assert "Traceback" not in toast.inner_text()
    assert not (server["runs"] / "bad").exists()


def _harmonise(page, iterations: int = 2) -> None:
    """Choose the tiny four-voice model (run voices4) and few sweeps, then click Harmonise."""
    page.click("#harm-model input")
    page.get_by_role("option", name="run: voices4").click()
    _set_number(page, "#harm-iterations", iterations)
    page.click("#harm-button")


@browser_test
def test_harmonise_a_melody_listen_see_the_score_download(page, server, tmp_path):
    page.get_by_role("tab", name="Harmonise").click()
    assert page.input_value("#harm-chorale input") == "none: the uploaded melody"
    page.set_input_files("#harm-melody input[type=file]", str(melody_midi(tmp_path / "tune.mid")))
    page.wait_for_selector("#harm-status :text('melody tune.mid: 5 notes, 1 pitched track')")
    started = time.time()
    _harmonise(page)
    audio = page.wait_for_selector("#harm-1-audio audio[src]", state="attached")
    print(f"harmonise -> audio element: {time.time() - started:.1f} s")
    assert "tune.mid harmonised by model.lstmidi: 1 version" in page.inner_text("#harm-status")
    wav = _fetch(page, audio.get_attribute("src")).body()
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    assert page.eval_on_selector("#harm-1-audio audio", "a => a.error === null")
    roll = page.wait_for_selector("#harm-1-roll img[src]")
    page.wait_for_function("img => img.complete && img.naturalWidth > 200", arg=roll)
    midi = page.wait_for_selector("#harm-1-files a[href$='.mid']").get_attribute("href")
    assert soprano(_fetch(page, midi).body()) == MELODY_QUARTERS  # the melody note for note, under three voices
    # the sheet music (lstmidi.render.render_score) follows: one SVG, and the MusicXML among the downloads
    page.wait_for_selector("#harm-1-sheet img, #harm-1-sheet .sheet-error")
    assert not page.query_selector("#harm-1-sheet .sheet-error"), page.inner_text("#harm-1-sheet")
    svg = _fetch(page, page.url + page.get_attribute("#harm-1-sheet img", "src")).body()
    assert svg.lstrip().startswith(b"<svg") and b"</svg>" in svg
    xml = page.wait_for_selector("#harm-1-files a[href$='.musicxml']").get_attribute("href")
    xml = _fetch(page, xml).body()
    for voice in (b"Soprano", b"Alto", b"Tenor", b"Bass"):
        assert voice in xml
    page.wait_for_selector("#harm-1-metrics :text('consonant vertical intervals at onsets')")
    assert not page.is_visible("#harm-2")
    screenshot(page, "studio-harmonise.png", tmp_path)


@browser_test
def test_harmonise_bad_uploads_get_a_message_and_a_held_out_chorale_works(page, server, tmp_path, chorale_model):
    from lstmidi.studio.state import held_out_chorales

    page.get_by_role("tab", name="Harmonise").click()
    fake = tmp_path / "melody.mid"
    fake.write_text("a melody in words, not MIDI")
    page.set_input_files("#harm-melody input[type=file]", str(fake))
    toast = page.wait_for_selector(".toast-body:has-text('not a MIDI file')")
    assert "melody.mid" in toast.inner_text()
    page.click(".toast-body button.toast-close")
    page.click("#harm-melody button[aria-label='Clear']")

    page.set_input_files("#harm-melody input[type=file]", str(drums_midi(tmp_path / "beat.mid")))
    page.wait_for_selector("#harm-status :text('melody beat.mid: 16 notes, 0 pitched tracks')")
    _harmonise(page, iterations=1)
    toast = page.wait_for_selector(".toast-body:has-text('only drum notes')")
    assert toast.inner_text().count("beat.mid") >= 1 and str(tmp_path) not in toast.inner_text()
    assert "Traceback" not in page.content() and not page.is_visible("#harm-1")
    page.click(".toast-body button.toast-close")

    # a model upload: a piano-roll model is refused for harmonising, a four-voice one becomes the choice
    page.set_input_files("#harm-model-upload input[type=file]", str(roll_model(tmp_path / "rolls.lstmidi")))
    toast = page.wait_for_selector(".toast-body:has-text('harmonising needs a four-voice model')")
    assert "rolls.lstmidi" in toast.inner_text()
    page.click(".toast-body button.toast-close")
    page.click("#harm-model-upload button[aria-label='Clear']")
    shutil.copy(chorale_model, tmp_path / "mine.lstmidi")
    page.set_input_files("#harm-model-upload input[type=file]", str(tmp_path / "mine.lstmidi"))
    page.wait_for_selector("#harm-status :text('model mine.lstmidi added to the list')")
    _wait_for_value(page, "#harm-model input", "uploaded: mine.lstmidi")

    name = held_out_chorales()[0]  # a held-out Bach chorale instead: its soprano is harmonised
    page.click("#harm-chorale input")
    page.get_by_role("option", name=name).click()
    page.wait_for_function("() => !document.querySelector('#harm-melody a')")  # the upload is dropped
    page.click("#harm-button")
    page.wait_for_selector("#harm-1-audio audio[src]", state="attached")
    assert f"{name} harmonised by mine.lstmidi" in page.inner_text("#harm-status")
    page.wait_for_selector('#harm-1-metrics :text("Bach\'s own")')  # the measures beside Bach's own


@browser_test
def test_a_refused_model_upload_can_be_cleared_and_replaced(page, server, tmp_path, chorale_model):
    fake = tmp_path / "broken.lstmidi"
    fake.write_text("not a model")
    page.set_input_files("#gen-model-upload input[type=file]", str(fake))
    toast = page.wait_for_selector(".toast-body:has-text('not an lstmidi model file')")
    assert "broken.lstmidi" in toast.inner_text()
    page.click(".toast-body button.toast-close")
    page.click("#gen-model-upload button[aria-label='Clear']")
    shutil.copy(chorale_model, tmp_path / "good.lstmidi")
    page.set_input_files("#gen-model-upload input[type=file]", str(tmp_path / "good.lstmidi"))
    page.wait_for_selector("#gen-status :text('model good.lstmidi added to the list')")
    _wait_for_value(page, "#gen-model input", "uploaded: good.lstmidi")
    page.wait_for_selector("#gen-model-upload input[type=file]", state="attached")  # the upload is cleared
