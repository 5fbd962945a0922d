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
from .state import Studio, generate_pieces, piece_report
from .uploads import (
    BUNDLED,
    KEYS,
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
                        with gr.Row():
                            seed = gr.Number(0, precision=0, label="seed", elem_id="gen-seed")
                            num = gr.Slider(1, MAX_PIECES, value=1, step=1, label="pieces", elem_id="gen-num")
                generate_button = gr.Button("Generate", variant="primary", elem_id="gen-button")
                gen_status = gr.Markdown(elem_id="gen-status")
                slots = []
                for i in range(1, MAX_PIECES + 1):
                    with gr.Column(visible=False, elem_id=f"piece-{i}") as box:
                        gr.Markdown(f"### Piece {i}")
                        audio = gr.Audio(
                            type="filepath",
                            interactive=False,
                            label=f"piece {i}",
                            elem_id=f"piece-{i}-audio",
                            waveform_options=gr.WaveformOptions(show_recording_waveform=False),
                            buttons=["download"],
                        )  # the browser's player
                        with gr.Row():
                            roll = gr.Image(
                                type="filepath",
                                interactive=False,
                                label="piano roll (primer shaded)",
                                elem_id=f"piece-{i}-roll",
                                buttons=["download", "fullscreen"],
                            )
                            files = gr.File(
                                file_count="multiple", interactive=False, label="downloads", elem_id=f"piece-{i}-files"
                            )
                        sheet = gr.HTML(elem_id=f"piece-{i}-sheet")
                        metrics = gr.Markdown(elem_id=f"piece-{i}-metrics")
                    slots.append((box, audio, roll, files, sheet, metrics))
                result_state = gr.State(None)

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
            for i in range(len(slots)):
                if i < len(pieces):
                    p = pieces[i]
                    out += [
                        gr.Column(visible=True),
                        p["wav"],
                        p["png"],
                        [p["midi"], p["wav"]],
                        "<p><i>sheet music: rendering …</i></p>",
                        "",
                    ]
                else:
                    out += [gr.Column(visible=False), None, None, None, "", ""]
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
                downloads = gr.skip()
                try:
                    sheet = render_score(midi, force=True)  # the piece's own folder: a repeat replaces it
                    downloads = [midi, result["pieces"][i]["wav"], sheet["musicxml"]]
                    html = f"<div class='sheet-music'><img alt='sheet music' src='{_file_url(sheet['svg'])}'></div>"
                except Exception as err:  # noqa: BLE001 — music21/verovio fail on some pieces: say so, keep the rest
                    html = (
                        f"<p class='sheet-error'><b>Sheet music could not be rendered for this piece</b> "
                        f"({type(err).__name__}: {str(err)[:200]}). The MIDI, audio and piano roll are fine.</p>"
                    )
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

        @_page_errors
        def on_model_upload(path):
            if not path:
                return gr.skip(), gr.skip(), gr.skip()
            value = studio.add_uploaded_model(path)
            choices = studio.model_choices()
            return gr.Dropdown(choices=choices, value=value), None, f"model `{upload_name(path)}` added to the list"

        model_upload.upload(on_model_upload, model_upload, [model, model_upload, gen_status], api_name=False)

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

        def on_tick(seen, current_model, current_init):
            text, picture, _done = poll_job(studio)
            if seen != studio.models_version:
                choices = studio.model_choices()
                values = {v for _, v in choices}
                return (
                    text,
                    picture if picture else gr.skip(),
                    studio.models_version,
                    gr.Dropdown(choices=choices, value=current_model if current_model in values else BUNDLED),
                    gr.Dropdown(
                        choices=[("none: train a new model", "none")] + choices,
                        value=current_init if current_init in values else "none",
                    ),
                )
            return text, picture if picture else gr.skip(), seen, gr.skip(), gr.skip()

        timer.tick(
            on_tick,
            [models_seen, model, init],
            [train_status, curve, models_seen, model, init],
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
