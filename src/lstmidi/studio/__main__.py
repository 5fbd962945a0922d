"""python -m lstmidi.studio train-job SPEC.json: the child process of a training job (started by lstmidi serve)."""

import sys

from .jobs import train_job

if len(sys.argv) == 3 and sys.argv[1] == "train-job":
    sys.exit(train_job(sys.argv[2]))
sys.exit("usage: python -m lstmidi.studio train-job SPEC.json (started by lstmidi serve)")
