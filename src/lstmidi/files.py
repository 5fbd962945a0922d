"""Writing files so that a crash never leaves half a file under the final name, where caches go, and the
pictures lstmidi draws.

Every file lstmidi writes (model files, checkpoints, reports, caches, MIDI, audio, pictures) goes to a
temporary file in the same folder first and is moved onto its name with `os.replace` (atomic on POSIX):
the name holds the old file or the complete new one, never a part.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import LstmidiError

# mkstemp creates files as 0600; outputs get the usual 0666 & ~umask like open() gives. The umask is read
# once at import (reading it means setting it, which is not thread-safe later on).
_UMASK = os.umask(0)
os.umask(_UMASK)


def default_cache_dir() -> Path:
    """Where lstmidi keeps what it can make again (corpus arrays, tokenizer tables): $LSTMIDI_CACHE, else
    ~/.cache/lstmidi."""
    return Path(os.environ.get("LSTMIDI_CACHE") or Path.home() / ".cache" / "lstmidi")


@contextmanager
def atomic_path(path: str | Path, *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path` (hidden, same folder, `path`'s suffix kept last because some
    writers choose the format from it); when the block ends without an error the file replaces `path`,
    else it is deleted. `durable`: flush the file to disk before the rename (checkpoints)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: bytes | str | Callable[[IO[bytes]], Any], *, durable: bool = False) -> Path:
    """Write `data` (bytes, text as UTF-8, or a function that writes into a binary file) to `path` atomically."""
    with atomic_path(path, durable=durable) as tmp:
        if callable(data):
            with open(tmp, "wb") as f:
                data(f)
        elif isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically (UTF-8); LstmidiError naming the file if it cannot be written."""
    try:
        return atomic_write(path, text)
    except OSError as err:
        raise LstmidiError(f"{path}: cannot write ({err.strerror or err})") from None


def figure(figsize: tuple[float, float], dpi: int = 100, **subplots):
    """(Figure, axes) for a picture: a matplotlib Figure on the Agg canvas, not pyplot (no global state,
    no display, safe in threads and servers); `subplots` go to `Figure.subplots` (nrows, ncols, ...)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(**subplots)


def save_figure(fig, path: str | Path, dpi: int | None = None) -> Path:
    """Save a matplotlib figure as a PNG file atomically (at `dpi`, default the figure's)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", **({"dpi": dpi} if dpi else {}))
    return Path(path)
