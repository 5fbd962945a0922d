"""The studio's web page (Gradio Blocks) and `serve()`. Gradio is imported only here, inside the functions."""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

from ..errors import LstmidiError
from ..render import render_score
from .jobs import REPORT_HEADERS, cancel_job, inspect_uploads, poll_job, report_rows, start_training
from .state import (
    Studio,
    generate_pieces,
    harmonize_pieces,
    harmony_report,
    held_out_chorales,
    is_four_voice,
    piece_report,
)
from .uploads import (
    BUNDLED,
    KEYS,
    MAX_ITERATIONS,
    MAX_MIDI_BYTES,
    MAX_PIECES,
    MAX_SECONDS,
    MAX_UPLOAD_MB,
    PROGRAMS,
    check_midi_bytes,
    read_limited,
    upload_name,
)


def _page_errors(fn):
    """Run a handler; LstmidiError (and any other exception) becomes a message in the page, not a traceback."""
    import functools

    import gradio as gr

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except LstmidiError as err:
            raise gr.Error(str(err), duration=None) from None
        except Exception as err:  # noqa: BLE001
            traceback.print_exc()
            raise gr.Error(f"unexpected error: {type(err).__name__}: {err}", duration=None) from None

    return wrapped


def _file_url(path: str | Path) -> str:
    return "gradio_api/file=" + str(Path(path).resolve())


CSS = """
.sheet-music { max-height: 520px; overflow: auto; background: white; border: 1px solid #ddd; padding: 4px; }
.sheet-music img { width: 100%; display: block; }
"""


NO_CHORALE = "none: the uploaded melody"


def _chorale_note() -> str:
    """The Harmonise tab's note when this installation has no bundled chorale model."""
    from ..api import CHORALE, bundled_path

    if bundled_path(CHORALE).is_file():
        return ""
    return (
        "*The bundled chorale model is not installed in this lstmidi yet: train one (Train tab, preset "
        "`chorale`) or upload a four-voice model, then choose it here.*"
    )


def _piece_slots(prefix: str, what: str, roll_label: str) -> list[tuple]:
    """MAX_PIECES hidden result boxes (ids PREFIX-i, PREFIX-i-audio, -roll, -files, -sheet, -metrics): each
    (box, audio, roll, files, sheet, metrics)."""
    import gradio as gr

    slots = []
    for i in range(1, MAX_PIECES + 1):
        with gr.Column(visible=False, elem_id=f"{prefix}-{i}") as box:
            gr.Markdown(f"### {what.capitalize()} {i}")
            audio = gr.Audio(
                type="filepath",
                interactive=False,
                label=f"{what} {i}",
                elem_id=f"{prefix}-{i}-audio",
                waveform_options=gr.WaveformOptions(show_recording_waveform=False),
                buttons=["download"],
            )  # the browser's player
            with gr.Row():
                roll = gr.Image(
                    type="filepath",
                    interactive=False,
                    label=roll_label,
                    elem_id=f"{prefix}-{i}-roll",
                    buttons=["download", "fullscreen"],
                )
                files = gr.File(
                    file_count="multiple", interactive=False, label="downloads", elem_id=f"{prefix}-{i}-files"
                )
            sheet = gr.HTML(elem_id=f"{prefix}-{i}-sheet")
            metrics = gr.Markdown(elem_id=f"{prefix}-{i}-metrics")
        slots.append((box, audio, roll, files, sheet, metrics))
    return slots


def _seed_and_count(prefix: str, what: str) -> tuple:
    """The seed (id PREFIX-seed) and how many pieces to write (PREFIX-num, 1 to MAX_PIECES), side by side."""
    import gradio as gr

    with gr.Row():
        return (
            gr.Number(0, precision=0, label="seed", elem_id=f"{prefix}-seed"),
            gr.Slider(1, MAX_PIECES, value=1, step=1, label=what, elem_id=f"{prefix}-num"),
        )


def _results(button: str, prefix: str, slot_prefix: str, what: str, roll_label: str) -> tuple:
    """A tab's action button (id PREFIX-button), status line (PREFIX-status), result boxes (`_piece_slots`) and
    the state that carries the written pieces to the follow-up event."""
    import gradio as gr

    return (
        gr.Button(button, variant="primary", elem_id=f"{prefix}-button"),
        gr.Markdown(elem_id=f"{prefix}-status"),
        _piece_slots(slot_prefix, what, roll_label),
        gr.State(None),
    )


def _shown_pieces(pieces: list[dict], slots: list) -> list:
    """The values of the result boxes for written pieces: audio, piano roll and MIDI + WAV downloads at once,
    the sheet music to follow; the boxes past the last piece hidden."""
    import gradio as gr

    out = []
    for i in range(len(slots)):
        if i < len(pieces):
            p = pieces[i]
            out += [gr.Column(visible=True), p["wav"], p["png"], [p["midi"], p["wav"]]]
            out += ["<p><i>sheet music: rendering …</i></p>", ""]
        else:
            out += [gr.Column(visible=False), None, None, None, "", ""]
    return out


def _sheet(piece: dict) -> tuple[str, list | None]:
    """(HTML showing the sheet music of a written piece, its downloads with the MusicXML) through
    lstmidi.render.render_score, written beside the piece; a piece that cannot be engraved gets a message
    (and None: the downloads stay as they are)."""
    try:
        sheet = render_score(piece["midi"], force=True)  # the piece's own folder: a repeat replaces it
    except Exception as err:  # noqa: BLE001 — music21/verovio fail on some pieces: say so, keep the rest
        return (
            f"<p class='sheet-error'><b>Sheet music could not be rendered for this piece</b> "
            f"({type(err).__name__}: {str(err)[:200]}). The MIDI, audio and piano roll are fine.</p>"
        ), None
    html = f"<div class='sheet-music'><img alt='sheet music' src='{_file_url(sheet['svg'])}'></div>"
    return html, [piece["midi"], piece["wav"], sheet["musicxml"]]


def _wire_model_upload(studio: Studio, upload, dropdown, status, choices, check=None) -> None:
    """A model upload beside a model dropdown: the file is checked and kept (`Studio.add_uploaded_model`, then
    `check(name, value)` if given), the status says so, then the dropdown (`choices()`) selects it and the upload
    is cleared. The checking event writes only the status: an error there leaves the upload clearable (an error
    on the upload component itself would leave it stuck)."""
    import gradio as gr

    added = gr.State(None)

    @_page_errors
    def on_upload(path):
        if not path:
            return gr.skip(), gr.skip()
        value = studio.add_uploaded_model(path)
        if check is not None:
            check(upload_name(path), value)
        return f"model `{upload_name(path)}` added to the list", value

    upload.upload(on_upload, upload, [status, added], api_name=False).success(
        lambda value: (gr.Dropdown(choices=choices(), value=value), None),
        added,
        [dropdown, upload],
        api_name=False,
    )


def build_app(studio: Studio):
    """The Gradio Blocks of the studio."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    from ..api import DEFAULT_PRESET
    from ..config import preset_names

    with gr.Blocks(title="lstmidi studio", analytics_enabled=False) as app:
        gr.Markdown(
            "# lstmidi studio\nGenerate music with an LSTM model, listen to it, look at it — or train "
            "one on your own MIDI files."
        )
        models_seen = gr.State(studio.models_version)
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                with gr.Row():
                    with gr.Column(scale=1):
                        model = gr.Dropdown(studio.model_choices(), value=BUNDLED, label="model", elem_id="gen-model")
                        model_upload = gr.File(
                            label="…or upload a model (.lstmidi)",
                            type="filepath",
                            elem_id="gen-model-upload",
                            height=130,
                        )
                        primer = gr.File(
                            label="primer MIDI to continue (optional)",
                            type="filepath",
                            elem_id="gen-primer",
                            height=130,
                        )
                        primer_seconds = gr.Number(
                            0,
                            label="use the primer's first seconds (0: all of it)",
                            minimum=0,
                            elem_id="gen-primer-seconds",
                        )
                    with gr.Column(scale=1):
                        seconds = gr.Slider(
                            5,
                            MAX_SECONDS,
                            value=20,
                            step=1,
                            label="length (seconds of new music)",
                            elem_id="gen-seconds",
                        )
                        temperature = gr.Slider(
                            0.1,
                            2.0,
                            value=1.0,
                            step=0.05,
                            label="temperature (> 1 bolder, < 1 safer)",
                            elem_id="gen-temperature",
                        )
                        top_p = gr.Slider(
                            0.05, 1.0, value=0.95, step=0.01, label="top-p (event models)", elem_id="gen-top-p"
                        )
                        key = gr.Dropdown(KEYS, value="any", label="key (event models)", elem_id="gen-key")
                        programs = gr.CheckboxGroup(
                            PROGRAMS, label="instruments (none ticked: the model's choice)", elem_id="gen-programs"
                        )
                        seed, num = _seed_and_count("gen", "pieces")
                generate_button, gen_status, slots, result_state = _results(
                    "Generate", "gen", "piece", "piece", "piano roll (primer shaded)"
                )

            with gr.Tab("Harmonise", id="harmonize"):
                gr.Markdown(
                    "Give a melody and a four-voice model writes the other voices (soprano, alto, tenor, bass): "
                    "upload a MIDI file (its highest line, or the tracks of the voices ticked) or pick a Bach "
                    "chorale the bundled chorale model never trained on. The given voices are kept note for note."
                )
                gr.Markdown(_chorale_note(), elem_id="harm-note")
                with gr.Row():
                    with gr.Column(scale=1):
                        harm_model = gr.Dropdown(
                            studio.harmonize_choices(),
                            value=studio.harmonize_default(),
                            label="four-voice model",
                            elem_id="harm-model",
                        )
                        harm_model_upload = gr.File(
                            label="…or upload a four-voice model (.lstmidi)",
                            type="filepath",
                            elem_id="harm-model-upload",
                            height=130,
                        )
                        harm_melody = gr.File(label="melody (MIDI)", type="filepath", elem_id="harm-melody", height=130)
                        harm_chorale = gr.Dropdown(
                            [(NO_CHORALE, NO_CHORALE)] + [(n, n) for n in held_out_chorales()],
                            value=NO_CHORALE,
                            label="…or a held-out Bach chorale (its given voices)",
                            elem_id="harm-chorale",
                        )
                    with gr.Column(scale=1):
                        harm_voices = gr.CheckboxGroup(
                            ["S", "A", "T", "B"],
                            value=["S"],
                            label="given voices (kept; the others are written)",
                            elem_id="harm-voices",
                        )
                        harm_temperature = gr.Number(
                            0, minimum=0, label="temperature (0: the model's own)", elem_id="harm-temperature"
                        )
                        harm_iterations = gr.Number(
                            0,
                            precision=0,
                            minimum=0,
                            maximum=MAX_ITERATIONS,
                            label="iterations: resampling sweeps (0: the model's own)",
                            elem_id="harm-iterations",
                        )
                        harm_seed, harm_num = _seed_and_count("harm", "versions")
                harm_button, harm_status, harm_slots, harm_result = _results(
                    "Harmonise", "harm", "harm", "version", "piano roll"
                )

            with gr.Tab("Train", id="train"):
                gr.Markdown(
                    "Upload MIDI files (or a zip of them), or name a folder on this server; the corpus report "
                    "shows how every file reads. Then train: a new model from a preset, or fine-tune a model."
                )
                with gr.Row():
                    with gr.Column():
                        train_files = gr.File(
                            file_count="multiple",
                            type="filepath",
                            label="MIDI files or zip archives",
                            elem_id="train-files",
                        )
                        train_folder = gr.Textbox(
                            label="…or a folder on the server", placeholder="/path/to/midi", elem_id="train-folder"
                        )
                        check_button = gr.Button("Check files", elem_id="train-check")
                    with gr.Column():
                        preset = gr.Dropdown(
                            preset_names(), value=DEFAULT_PRESET, label="preset", elem_id="train-preset"
                        )
                        init = gr.Dropdown(
                            [("none: train a new model", "none")] + studio.model_choices(),
                            value="none",
                            label="fine-tune from (keeps the model's preset and tokenizer)",
                            elem_id="train-init",
                        )
                        with gr.Row():
                            epochs = gr.Number(5, precision=0, minimum=1, label="epochs", elem_id="train-epochs")
                            max_minutes = gr.Number(10, minimum=0, label="at most minutes", elem_id="train-minutes")
                        settings = gr.Textbox(
                            lines=3,
                            label="more settings (one section.key=value per line)",
                            placeholder="model.hidden=128\ntrain.lr=0.001",
                            elem_id="train-settings",
                        )
                        name = gr.Textbox(label="run name (empty: preset and time)", elem_id="train-name")
                with gr.Row():
                    start_button = gr.Button("Start training", variant="primary", elem_id="train-start")
                    cancel_button = gr.Button("Cancel training", variant="stop", elem_id="train-cancel")
                report_summary = gr.Markdown(elem_id="train-report-summary")
                report = gr.Dataframe(
                    headers=REPORT_HEADERS,
                    interactive=False,
                    label="corpus report (per file)",
                    elem_id="train-report",
                    wrap=True,
                )
                train_status = gr.Markdown("No training run yet.", elem_id="train-status")
                curve = gr.Image(
                    type="filepath", interactive=False, label="loss curve", elem_id="train-curve", buttons=["download"]
                )
                timer = gr.Timer(1.0)

        # ---- Generate ----
        # generate_pieces' arguments, in the order Gradio passes the components' values
        gen_fields = {"model": model, "model_upload": model_upload, "primer": primer, "primer_seconds": primer_seconds}
        gen_fields |= {"seconds": seconds, "temperature": temperature, "top_p": top_p, "key": key}
        gen_fields |= {"programs": programs, "seed": seed, "num": num}

        @_page_errors
        def on_generate(*values):
            started = time.time()
            result = generate_pieces(studio, **dict(zip(gen_fields, values)))
            pieces = result["pieces"]
            out = [
                (
                    f"{len(pieces)} piece{'s' if len(pieces) > 1 else ''} from `{Path(result['model']).name}` "
                    f"in {time.time() - started:.1f} s; sheet music and measures follow."
                )
            ]
            out += _shown_pieces(pieces, slots)
            return out + [result]

        @_page_errors
        def on_details(result):
            if not result:
                return [gr.skip()] * (3 * MAX_PIECES + 1)
            out = []
            for i in range(MAX_PIECES):
                if i >= len(result["pieces"]):
                    out += [gr.skip(), gr.skip(), gr.skip()]
                    continue
                midi = result["pieces"][i]["midi"]
                html, downloads = _sheet(result["pieces"][i])
                downloads = downloads or gr.skip()
                try:
                    metrics_md = piece_report(studio, result["model"], midi)
                except Exception as err:  # noqa: BLE001
                    traceback.print_exc()
                    metrics_md = f"measures could not be computed: {type(err).__name__}: {err}"
                out += [html, metrics_md, downloads]
            return out + [gr.skip()]

        gen_inputs = list(gen_fields.values())
        gen_outputs = [gen_status] + [c for slot in slots for c in slot] + [result_state]
        detail_outputs = [c for slot in slots for c in (slot[4], slot[5], slot[3])] + [gen_status]
        generate_button.click(
            on_generate, gen_inputs, gen_outputs, concurrency_limit=1, concurrency_id="generate", api_name=False
        ).then(
            on_details,
            result_state,
            detail_outputs,
            concurrency_limit=1,
            concurrency_id="details",
            api_name=False,
            show_progress="hidden",
        )

        @_page_errors
        def on_primer(path):
            if not path:
                return ""
            name = upload_name(path)
            score = check_midi_bytes(read_limited(Path(path), MAX_MIDI_BYTES, name), name)
            from ..midi import score_seconds

            return f"primer `{name}`: {score.note_num()} notes, {score_seconds(score):.1f} s"

        primer.upload(on_primer, primer, gen_status, api_name=False)

        _wire_model_upload(studio, model_upload, model, gen_status, studio.model_choices)

        # ---- Harmonise ----
        # harmonize_pieces' arguments, in the order Gradio passes the components' values
        harm_fields = {"model": harm_model, "melody": harm_melody, "chorale": harm_chorale, "voices": harm_voices}
        harm_fields |= {"seed": harm_seed, "num": harm_num, "temperature": harm_temperature}
        harm_fields |= {"iterations": harm_iterations}

        @_page_errors
        def on_harmonize(*values):
            started = time.time()
            request = dict(zip(harm_fields, values))
            if request["melody"] or request["chorale"] == NO_CHORALE:
                request["chorale"] = None  # an uploaded melody comes first
            result = harmonize_pieces(studio, **request)
            pieces = result["pieces"]
            status = (
                f"`{result['source']}` harmonised by `{Path(result['model']).name}`: {len(pieces)} version"
                f"{'s' if len(pieces) > 1 else ''} in {time.time() - started:.1f} s; sheet music and measures follow."
            )
            return [status] + _shown_pieces(pieces, harm_slots) + [result]

        @_page_errors
        def on_harmony_sheets(result):
            if not result:
                return [gr.skip()] * (3 * MAX_PIECES)
            out = []
            for i in range(MAX_PIECES):
                if i >= len(result["pieces"]):
                    out += [gr.skip(), gr.skip(), gr.skip()]
                    continue
                html, downloads = _sheet(result["pieces"][i])
                try:
                    measures = harmony_report(result["pieces"][i]["midi"], result["chorale"])
                except Exception as err:  # noqa: BLE001
                    traceback.print_exc()
                    measures = f"measures could not be computed: {type(err).__name__}: {err}"
                out += [html, measures, downloads or gr.skip()]
            return out

        harm_outputs = [harm_status] + [c for slot in harm_slots for c in slot] + [harm_result]
        harm_button.click(
            on_harmonize,
            list(harm_fields.values()),
            harm_outputs,
            concurrency_limit=1,
            concurrency_id="generate",  # one queue with Generate: one piece of music at a time
            api_name=False,
        ).then(
            on_harmony_sheets,
            harm_result,
            [c for slot in harm_slots for c in (slot[4], slot[5], slot[3])],
            concurrency_limit=1,
            concurrency_id="details",
            api_name=False,
            show_progress="hidden",
        )

        @_page_errors
        def on_melody(path):
            if not path:
                return "", gr.skip()
            name = upload_name(path)
            score = check_midi_bytes(read_limited(Path(path), MAX_MIDI_BYTES, name), name)
            from ..midi import score_seconds

            pitched = sum(1 for t in score.tracks if not t.is_drum and len(t.notes))
            return (
                f"melody `{name}`: {score.note_num()} notes, {pitched} pitched "
                f"track{'s' if pitched != 1 else ''}, {score_seconds(score):.1f} s",
                NO_CHORALE,
            )

        harm_melody.upload(on_melody, harm_melody, [harm_status, harm_chorale], api_name=False)
        harm_chorale.input(  # a chosen chorale replaces the uploaded melody
            lambda name: None if name and name != NO_CHORALE else gr.skip(), harm_chorale, harm_melody, api_name=False
        )

        def four_voice_only(name: str, value: str) -> None:
            if not is_four_voice(studio.runs / value):
                raise LstmidiError(
                    f"{name}: harmonising needs a four-voice model (preset chorale); it was added to Generate's "
                    "model list"
                )

        _wire_model_upload(
            studio, harm_model_upload, harm_model, harm_status, studio.harmonize_choices, four_voice_only
        )

        # ---- Train ----
        @_page_errors
        def on_check(files_v, folder_v, preset_v):
            if not files_v and not (folder_v or "").strip():
                return "", None
            result = inspect_uploads(studio, files_v, folder_v, preset_v)
            from ..corpus import count_line

            s = result["summary"]
            return f"**corpus report**: {s['files']} files: {count_line(s)}", report_rows(result)

        train_files.upload(on_check, [train_files, train_folder, preset], [report_summary, report], api_name=False)
        check_button.click(on_check, [train_files, train_folder, preset], [report_summary, report], api_name=False)

        # start_training's arguments, in the order Gradio passes the components' values
        train_fields = {"uploads": train_files, "folder": train_folder, "preset": preset, "init": init}
        train_fields |= {"epochs": epochs, "max_minutes": max_minutes, "settings": settings, "name": name}

        @_page_errors
        def on_start(*values):
            job, inspection = start_training(studio, **dict(zip(train_fields, values)))
            from ..corpus import count_line

            s = inspection["summary"]
            return (
                f"**corpus report**: {s['files']} files: {count_line(s)}",
                report_rows(inspection),
                f"**Run `{job.name}`: starting** …",
            )

        start_button.click(
            on_start,
            list(train_fields.values()),
            [report_summary, report, train_status],
            concurrency_limit=1,
            concurrency_id="train",
            api_name=False,
        )
        cancel_button.click(_page_errors(lambda: cancel_job(studio)), None, train_status, api_name=False)

        def on_tick(seen, current_model, current_init, current_harmony):
            text, picture, _done = poll_job(studio)
            if seen != studio.models_version:
                choices = studio.model_choices()
                values = {v for _, v in choices}
                harmony = studio.harmonize_choices()
                return (
                    text,
                    picture if picture else gr.skip(),
                    studio.models_version,
                    gr.Dropdown(choices=choices, value=current_model if current_model in values else BUNDLED),
                    gr.Dropdown(
                        choices=[("none: train a new model", "none")] + choices,
                        value=current_init if current_init in values else "none",
                    ),
                    gr.Dropdown(
                        choices=harmony,
                        value=current_harmony
                        if current_harmony in {v for _, v in harmony}
                        else studio.harmonize_default(),
                    ),
                )
            return text, picture if picture else gr.skip(), seen, gr.skip(), gr.skip(), gr.skip()

        timer.tick(
            on_tick,
            [models_seen, model, init, harm_model],
            [train_status, curve, models_seen, model, init, harm_model],
            show_progress="hidden",
            concurrency_limit=None,
            api_name=False,
        )
    return app


def serve(host: str = "127.0.0.1", port: int = 7860, runs: str | Path = "lstmidi-runs") -> None:
    """Start the studio on http://HOST:PORT (blocks until interrupted)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr
    except ImportError:
        raise LstmidiError("lstmidi serve needs Gradio: pip install 'lstmidi[studio]'") from None
    studio = Studio(runs)
    studio.server_folders = host in ("127.0.0.1", "localhost", "::1")
    app = build_app(studio)
    app.queue(default_concurrency_limit=1, max_size=32)
    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )  # system fonts: nothing fetched from a CDN
    print(f"lstmidi studio: runs folder {studio.runs}", file=sys.stderr)
    try:
        app.launch(
            server_name=host,
            server_port=port,
            share=False,
            inbrowser=False,
            show_error=False,
            max_file_size=f"{MAX_UPLOAD_MB}mb",
            allowed_paths=[str(studio.home / "generated"), str(studio.home / "jobs")],
            theme=theme,
            css=CSS,
            footer_links=[],
            quiet=False,
        )
    finally:
        if studio.job is not None and studio.job.status == "running":
            cancel_job(studio)
