"""Exceptions that lstmidi raises for bad input; each message names the file or field and the reason."""


class LstmidiError(Exception):
    """Base class: an error the user can fix (bad file, bad option); the CLI prints it without a traceback."""


class MidiError(LstmidiError):
    """A file could not be read as MIDI music (not MIDI, truncated, no notes, ...)."""


class OutputExistsError(LstmidiError):
    """An output file exists and `force` was not given."""


class ModelFileError(LstmidiError):
    """A `.lstmidi` model file is missing, damaged or not a model file."""
