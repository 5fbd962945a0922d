"""Training speed on an idle and on a busy machine: ms per flagship training batch (2 x 384, batch
16 x 256 tokens, median of 20 after 5 warm-up batches) with 2 threads, 2 threads and a passive OpenMP
wait policy, 1 thread, and lstmidi's own choice (lstmidi.threads), each in a fresh process, first on
an idle machine, then beside one process that keeps a core busy.

    python benchmarks/contention.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = {
    "2 threads": {"OMP_NUM_THREADS": "2"},
    "2 threads, OMP_WAIT_POLICY=PASSIVE": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "lstmidi's choice": {},
}

MEASURE = """
import time
from lstmidi.threads import configure
print(configure())  # before torch: one thread per free core unless OMP_NUM_THREADS says otherwise
import torch
from lstmidi.batches import batch_objective
from lstmidi.config import load_preset
from lstmidi.encodings import build_encoding
from lstmidi.models import build_model
p = load_preset("flagship", ["encoding.programs=false"])
enc = build_encoding(p.encoding)
model = build_model(p.model, enc.sizes)
opt = torch.optim.Adam(model.parameters(), 1e-3)
x = torch.randint(3, enc.sizes["vocab_size"], (16, 257), generator=torch.Generator().manual_seed(0))
batch = (x[:, :-1], x[:, 1:], torch.ones(16, 256, dtype=torch.uint8))
times = []
for i in range(25):
    t = time.perf_counter()
    loss, _, _ = batch_objective(model, batch, "tokens", p.train.loss)
    opt.zero_grad()
    loss.backward()
    opt.step()
    times.append(time.perf_counter() - t)
print(1000 * sorted(times[5:])[10])
"""


def measure(env: dict[str, str]) -> tuple[float, str]:
    """(ms per batch, lstmidi's thread line) in a fresh process with `env` added to a clean thread setting."""
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "LSTMIDI_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", MEASURE], env={**base, **env}, capture_output=True, text=True, check=True
    )
    line, ms = out.stdout.strip().splitlines()[-2:]
    return float(ms), line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    results = {}
    for machine in ("idle", "one busy process"):
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if machine != "idle" else None
        try:
            time.sleep(2 if spinner else 0)
            results[machine] = {}
            for name, env in SETTINGS.items():
                ms, line = measure(env)
                results[machine][name] = {"ms_per_batch": ms, "threads": line}
        finally:
            if spinner:
                spinner.kill()
    print(f"{'setting':36s} {'idle':>8s} {'busy':>8s}   ms per flagship training batch")
    for name in SETTINGS:
        idle, busy = (results[m][name]["ms_per_batch"] for m in results)
        print(f"{name:36s} {idle:8.0f} {busy:8.0f}")
    best = {m: min(v["ms_per_batch"] for v in r.values()) for m, r in results.items()}
    for m, r in results.items():
        chosen = r["lstmidi's choice"]
        print(f"{m}: lstmidi's choice {chosen['ms_per_batch'] / best[m]:.2f}x the best ({chosen['threads']})")
    if args.json:
        Path(args.json).write_text(json.dumps({"cores": os.cpu_count(), "results": results, "best": best}, indent=1))


if __name__ == "__main__":
    main()
