"""How long does the studio take from pressing Generate to a 30-second piece that can be played?

Measured the way a user meets it: `lstmidi serve` is started on a free port with a temporary runs folder
(and a temporary LSTMIDI_CACHE and Gradio temp folder; OMP_NUM_THREADS is removed from its environment,
so torch uses its default threads), the page is opened in Debian's Chromium through Playwright, the
length is set to 30 s (bundled model, one piece), and for seeds 0..N-1 the clock runs from the click on
Generate until piece 1's new <audio> element has a src, readyState >= 1 and a finite duration (the
browser has the WAV's metadata: the play button works). The first request is the cold one (the server
loads the model then). Before the next seed the script waits for the sheet music and measures of the
piece (the `.then` step) so that they do not run during the next measurement. Also recorded: the audio's
duration as the browser reads it, the server's own generate time (from the status line, "in X s") and
the time until sheet music and measures are shown. The server's output goes to a temporary log, which
is kept (its path is printed) if the run fails; the server is stopped through its own process.

    python benchmarks/studio_latency.py [--runs 7] [--seconds 30] [--json benchmarks/results-studio-latency.json]

Needs the studio extras and Chromium (`apt-get install chromium`, or set LSTMIDI_CHROMIUM).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent

# truthy once piece 1 shows an <audio> with a src that is not `prev` and whose metadata is loaded
PLAYABLE = """prev => {
  const toast = document.querySelector('.toast-body');
  if (toast) return 'error: ' + toast.innerText;
  const a = document.querySelector('#piece-1-audio audio[src]');
  if (!a) return false;
  const src = a.getAttribute('src') || '';
  if (!src || src === prev) return false;
  return a.readyState >= 1 && Number.isFinite(a.duration) && a.duration > 0 ? 'ok' : false;
}"""
# true once the `.then` step (sheet music + measures) has filled piece 1 in
DETAILS_DONE = """() => {
  const sheet = document.querySelector('#piece-1-sheet');
  const metrics = document.querySelector('#piece-1-metrics');
  return sheet && metrics && !sheet.innerText.includes('rendering')
    && (sheet.querySelector('img, .sheet-error') !== null) && metrics.innerText.trim().length > 0;
}"""


def find_chromium() -> str:
    for p in (
        os.environ.get("LSTMIDI_CHROMIUM"),
        shutil.which("chromium"),
        "/usr/bin/chromium",
        shutil.which("chromium-browser"),
    ):
        if p and Path(p).is_file():
            return p
    sys.exit(
        "studio_latency: Chromium is missing: apt-get install chromium (make install does it as root), "
        "or set LSTMIDI_CHROMIUM=/path/to/chromium"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp: Path, port: int, log_file) -> subprocess.Popen:
    env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(tmp / "gradio"),
        "LSTMIDI_CACHE": str(tmp / "cache"),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("OMP_NUM_THREADS", None)
    cmd = [sys.executable, "-m", "lstmidi.cli", "serve", "--port", str(port), "--runs", str(tmp / "runs")]
    return subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_until_up(proc: subprocess.Popen, url: str, log: Path, timeout: float = 120) -> float:
    started = time.perf_counter()
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - started
        except OSError:
            pass
        if proc.poll() is not None or time.perf_counter() - started > timeout:
            raise RuntimeError(f"lstmidi serve did not start (log {log}):\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def set_number(page, selector: str, value) -> None:
    field = page.locator(f"{selector} input[type=number]").first
    field.fill(str(value))
    field.press("Tab")


def measure(url: str, chromium: str, seconds: float, runs: int, timeout_s: float) -> list[dict]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sys.exit("studio_latency needs playwright: pip install -c constraints.txt -e '.[dev,studio]' (make install)")
    rows = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(timeout_s * 1000)
            page.goto(url)
            page.wait_for_selector("#gen-button")
            set_number(page, "#gen-seconds", int(seconds) if float(seconds).is_integer() else seconds)
            for seed in range(runs):
                set_number(page, "#gen-seed", seed)
                prev = page.eval_on_selector_all(
                    "#piece-1-audio audio[src]", "as => as.length ? as[0].getAttribute('src') : ''"
                )
                started = time.perf_counter()
                page.click("#gen-button")
                outcome = page.wait_for_function(PLAYABLE, arg=prev, polling=20).json_value()
                elapsed = time.perf_counter() - started
                if outcome != "ok":
                    raise RuntimeError(f"seed {seed}: the page shows an {outcome}")
                audio = page.eval_on_selector(
                    "#piece-1-audio audio[src]",
                    "a => ({src: a.getAttribute('src'), duration: a.duration, readyState: a.readyState})",
                )
                page.wait_for_function(DETAILS_DONE)
                details = time.perf_counter() - started
                status = page.inner_text("#gen-status")
                server = re.search(r"piece from \S+ in ([0-9.]+) s", status)
                asked = [page.input_value(f"{sel} input[type=number]") for sel in ("#gen-seconds", "#gen-seed")]
                if float(asked[0]) != float(seconds) or int(float(asked[1])) != seed:
                    raise RuntimeError(
                        f"the page shows length {asked[0]} and seed {asked[1]}, not {seconds} and {seed}"
                    )
                rows.append(
                    {
                        "seed": seed,
                        "seconds_to_playable": round(elapsed, 3),
                        "audio_seconds": round(float(audio["duration"]), 3),
                        "ready_state": audio["readyState"],
                        "seconds_to_details": round(details, 3),
                        "server_generate_s": float(server.group(1)) if server else None,
                        "wav": audio["src"].rsplit("/", 1)[-1],
                    }
                )
                print(f"  seed {seed}: {elapsed:.2f} s to playable, audio {audio['duration']:.1f} s", flush=True)
        finally:
            browser.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="seeds 0..N-1, one Generate each (default 7)")
    ap.add_argument("--seconds", type=float, default=30.0, help="the length control (default 30)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for one piece")
    ap.add_argument("--json", default=str(HERE / "results-studio-latency.json"))
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    chromium = find_chromium()
    load_at_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    tmp = Path(tempfile.mkdtemp(prefix="lstmidi-studio-latency-"))
    log = tmp / "server.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    ok = False
    with log.open("w") as log_file:
        proc = start_server(tmp, port, log_file)
        try:
            startup = wait_until_up(proc, url, log)
            print(f"lstmidi serve up in {startup:.1f} s on {url} (pid {proc.pid}, log {log})", flush=True)
            rows = measure(url, chromium, args.seconds, args.runs, args.timeout)
            ok = True
        finally:
            stop_server(proc)
    if ok:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"server log kept: {log}", file=sys.stderr)

    times = [r["seconds_to_playable"] for r in rows]
    warm = times[1:]
    cores = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    summary = {
        "cold_first_s": times[0],
        "median_s": round(statistics.median(times), 3),
        "min_s": min(times),
        "max_s": max(times),
        "warm_median_s": round(statistics.median(warm), 3) if warm else None,
        "warm_min_s": min(warm) if warm else None,
        "warm_max_s": max(warm) if warm else None,
        "audio_seconds_median": round(statistics.median(r["audio_seconds"] for r in rows), 3),
    }
    print()
    print(f"{'seed':>4}  {'s to playable':>13}  {'audio s':>8}  {'server gen s':>12}  {'s to details':>12}")
    for r in rows:
        cold = "  (cold)" if r["seed"] == rows[0]["seed"] else ""
        gen = f"{r['server_generate_s']:.1f}" if r["server_generate_s"] is not None else "?"
        print(
            f"{r['seed']:>4}  {r['seconds_to_playable']:>13.2f}  {r['audio_seconds']:>8.1f}  {gen:>12}  "
            f"{r['seconds_to_details']:>12.2f}{cold}"
        )
    print()
    print(f"first (cold) request     {summary['cold_first_s']:.2f} s")
    print(
        f"all {len(times)}: median {summary['median_s']:.2f} s, min {summary['min_s']:.2f} s, max "
        f"{summary['max_s']:.2f} s"
    )
    if warm:
        print(
            f"warm {len(warm)} (seed 1..): median {summary['warm_median_s']:.2f} s, min {summary['warm_min_s']:.2f} s, "
            f"max {summary['warm_max_s']:.2f} s"
        )
    print(
        f"machine: {cores} cores ({usable} usable), {platform.processor() or platform.machine()}, "
        f"OMP_NUM_THREADS unset for the server"
    )

    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "server_command": f"{Path(sys.executable).name} -m lstmidi.cli serve --port PORT --runs TMP/runs",
        "requested_seconds": args.seconds,
        "runs": args.runs,
        "seeds": [r["seed"] for r in rows],
        "clock": "click on #gen-button -> #piece-1-audio <audio> with a new src, readyState >= 1, finite duration",
        "server_startup_s": round(startup, 2),
        **summary,
        "machine": {
            "cores": cores,
            "usable_cores": usable,
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "omp_num_threads": None,
            "load_average_at_start": load_at_start,
            "chromium": chromium,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
        "rows": rows,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
