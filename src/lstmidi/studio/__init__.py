"""lstmidi studio: a web page (Gradio) to generate, harmonise, listen, look and train — a thin layer over the
public API.

`lstmidi serve` calls `serve()`. Gradio is imported only inside `build_app()`/`serve()`, so the rest of
lstmidi never depends on it (install it with the `studio` extra).

The runs folder (`--runs`, default ./lstmidi-runs) holds everything the page writes:
    RUNS/<run>/                     training runs (the `lstmidi train` run folder: model.lstmidi, loss.png, ...)
    RUNS/_studio/data/<run>/        the MIDI files uploaded for that run (sanitised names)
    RUNS/_studio/models/            uploaded model files
    RUNS/_studio/generated/<id>/    generated pieces and harmonisations: MIDI, WAV, piano roll, MusicXML, SVG
    RUNS/_studio/jobs/<run>.*       the training job: its log, progress (JSON) and live loss curve
Every model file under RUNS (outside checkpoints/) is offered in Generate beside the bundled models, and the
four-voice ones in Harmonise beside the bundled chorale model.

Safety: uploads are limited in size and count; names are reduced to a safe basename; files are checked
by content (MIDI: an MThd header that lstmidi's reader finds; zip archives: size, count and compression
ratio limits before anything is extracted, only MIDI members kept; models: a zip that `load_model`
accepts); one training job at a time (a child process, so it can be cancelled); generation and harmonising
requests are queued one at a time; errors become a message in the page (the traceback, if any, goes to the
server log); the server binds to 127.0.0.1 unless told otherwise.

Modules: `uploads` (limits, safe names, uploads checked by content), `state` (the server's state and the
work of the Generate and Harmonise tabs, through the public API), `jobs` (training in a child process),
`page` (the Gradio page and `serve`).
"""

from .jobs import TrainJob, cancel_job, inspect_uploads, poll_job, start_training, train_job
from .page import build_app, serve
from .state import Studio, generate_pieces, harmonize_pieces, held_out_chorales, piece_report
from .uploads import UploadError, run_name, safe_name, stage_uploads

__all__ = [
    "Studio",
    "TrainJob",
    "UploadError",
    "build_app",
    "cancel_job",
    "generate_pieces",
    "harmonize_pieces",
    "held_out_chorales",
    "inspect_uploads",
    "piece_report",
    "poll_job",
    "run_name",
    "safe_name",
    "serve",
    "stage_uploads",
    "start_training",
    "train_job",
]
