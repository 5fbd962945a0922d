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

from conftest import write_corpus
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


def test_uploaded_zip_bomb_and_nan_models_are_refused(tmp_path):
    """The studio's model upload goes through the same bounded loader: a 1 MB zip bomb (1 GB config.json)
    and a model with NaN weights are refused with the reason, and nothing is kept."""
    from lstmidi.config import load_preset
    from lstmidi.encodings import build_encoding
    from lstmidi.modelfile import save_model
    from lstmidi.models import build_model
    from lstmidi.studio import Studio
    from modelbytes import members, nan_model_weights, zip_with_bomb

    preset = load_preset("musicgenerator", ["model.hidden=8", "model.layers=1"])
    encoding = build_encoding(preset.encoding)
    good = save_model(
        tmp_path / "good.lstmidi",
        encoding=encoding,
        model=build_model(preset.model, encoding.sizes),
        preset=preset,
        metrics={},
        command="test",
    )
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
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("studio")
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
