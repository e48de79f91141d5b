"""Every command on real torch exports: exit code, message, float16 error, time and peak memory.

Runs the ``onnxgraph`` CLI as whole processes on the files :mod:`real_models` writes (one model per
architecture and exporter, listed in ``EXPORTS/manifest.json``), the way a user would:

* ``fp16``: ``convert --fp16`` (verified, default tolerance);
* ``fp16io``: ``convert --fp16 --keep-io-types``;
* ``optimize``: ``optimize`` (verified);
* ``info``: ``info``;
* ``bench``: ``bench --runs 3 --warmup 1`` on the optimized model (on the original when optimize
  wrote nothing, marked so), fed the export's ``NAME.inputs.npz``.

A command that exits 2 because the random inputs' dynamic dimensions of 1 do not fit the model (its
message names ``--input-shape``) is run again with the sample input's shapes, as the message tells a
user to do; the record keeps both messages. For each it records the exit code, the one-line message
(the last line on stderr, or the notes of a success), the float16 relative L2 error of the worst
output (from ``--json``), bench's median latency, the wall time and the peak resident memory of the
command and its children (``os.wait4``). Prints a table; ``--json FILE`` writes every record.

    python benchmarks/real_exports_check.py --exports /tmp/real [--models bert,gpt2] \
        [--commands fp16,optimize] [--timeout 1800] [--json results.json]

Outputs are written to a temporary folder that is emptied after each model (a converted BERT is a
few hundred MB). The exports themselves are never written.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

COMMANDS = ("fp16", "fp16io", "optimize", "info", "bench")
_OFF = re.compile(r"is (\d+(?:\.\d+)?)% off")


@dataclass
class Result:
    """One command on one export."""

    model: str
    exporter: str
    command: str
    exit_code: int | None
    """None when stopped at the timeout; negative: killed by that signal."""
    message: str
    seconds: float
    peak_rss_mb: float
    fp16_relative_l2: float | None = None
    """Worst output's relative L2 error after float16 conversion (convert commands only)."""
    bench_p50_ms: float | None = None
    """Median latency of ``bench`` (bench only)."""

    @property
    def verdict(self) -> str:
        if self.exit_code is None:
            return "TIMEOUT"
        return {0: "ok", 1: "FAIL", 2: "BAD"}.get(self.exit_code, f"EXIT{self.exit_code}")


def _onnxgraph() -> list[str]:
    here = os.path.dirname(sys.executable)
    exe = os.path.join(here, "onnxgraph")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "onnxgraph"]


def run_command(argv: list[str], timeout: float, folder: str) -> tuple[int | None, str, str, float, float]:
    """Run ``argv``; return exit code (None on timeout), stdout, stderr, seconds and peak RSS in MB.

    The peak RSS is ``os.wait4``'s for the command, which includes the children it waited for (the
    child process that runs a converted model on onnxruntime).
    """
    out_path, err_path = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
    start = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        code: int | None = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                code = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() - start > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                _, _, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
        proc.returncode = code if code is not None else -9  # reaped by wait4; keep Popen from waiting again
    seconds = time.monotonic() - start
    with open(out_path, encoding="utf-8", errors="replace") as f:
        stdout = f.read()
    with open(err_path, encoding="utf-8", errors="replace") as f:
        stderr = f.read()
    return code, stdout, stderr, seconds, usage.ru_maxrss / 1024


def _message(code: int | None, stdout: str, stderr: str, timeout: float) -> str:
    if code is None:
        return f"stopped after {timeout:g} s"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if code != 0:
        return lines[-1] if lines else f"exit {code}, nothing on stderr"
    notes = [line for line in lines if line.startswith(("note:", "warning:"))]
    return "; ".join(notes)[:300]


def _fp16_error(json_path: str, message: str) -> float | None:
    """The worst relative L2 error: from ``--json`` when the command wrote one, else from its message."""
    if os.path.exists(json_path):
        with open(json_path) as f:
            data = json.load(f)
        errors = [o["relative_l2"] for o in data.get("verification", {}).get("outputs", []) if "relative_l2" in o]
        return max(errors) if errors else None
    match = _OFF.search(message)
    return float(match.group(1)) / 100 if match else None


def _bench_p50(stdout: str) -> float | None:
    """The median latency in ms from ``bench --json`` (the first ``p50`` in it)."""
    try:
        data = json.loads(stdout)
    except json.JSONDecodeError:
        return None
    stack: list[object] = [data]
    while stack:
        node = stack.pop(0)
        if isinstance(node, dict):
            if isinstance(node.get("p50"), (int, float)):
                return float(node["p50"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


def _input_shapes(inputs: str | None) -> list[str]:
    """``--input-shape`` options giving every input the shape of the export's sample input."""
    if not inputs:
        return []
    import numpy as np

    with np.load(inputs) as arrays:
        return [f"--input-shape={name}={','.join(map(str, arrays[name].shape))}" for name in arrays.files]


def check_export(
    model: str, exporter: str, path: str, inputs: str | None, commands: list[str], timeout: float
) -> list[Result]:
    """Run each of ``commands`` on one export; return one :class:`Result` per command."""
    cli = _onnxgraph()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="real-exports-") as folder:
        optimized = os.path.join(folder, "optimized.onnx")
        for command in commands:
            report = os.path.join(folder, f"{command}.json")
            note = ""
            if command == "fp16":
                argv = [*cli, "convert", path, "-o", os.path.join(folder, "fp16.onnx"), "--fp16", "--json", report]
            elif command == "fp16io":
                argv = [
                    *cli,
                    "convert",
                    path,
                    "-o",
                    os.path.join(folder, "fp16io.onnx"),
                    "--fp16",
                    "--keep-io-types",
                    "--json",
                    report,
                ]
            elif command == "optimize":
                argv = [*cli, "optimize", path, "-o", optimized, "--json", report]
            elif command == "info":
                argv = [*cli, "info", path]
            else:
                target = optimized if os.path.exists(optimized) else path
                note = "" if target == optimized else "(on the original) "
                argv = [*cli, "bench", target, "--runs", "3", "--warmup", "1", "--json"]
                if inputs:
                    argv += ["--inputs", inputs]
            code, stdout, stderr, seconds, rss = run_command(argv, timeout, folder)
            message = note + _message(code, stdout, stderr, timeout)
            if code == 2 and "--input-shape" in message and _input_shapes(inputs):
                # dynamic sizes of 1 do not fit the model (wav2vec2's Conv kernels): the message says so;
                # measure again at the sample input's sizes, as the message tells the user to do
                first = message
                code, stdout, stderr, seconds, rss = run_command([*argv, *_input_shapes(inputs)], timeout, folder)
                message = f"[with --input-shape of the sample input; without: {first}] " + _message(
                    code, stdout, stderr, timeout
                )
            p50 = _bench_p50(stdout) if command == "bench" and code == 0 else None
            error = _fp16_error(report, message) if command.startswith("fp16") else None
            result = Result(model, exporter, command, code, message, round(seconds, 1), round(rss), error, p50)
            results.append(result)
            print(_row(result), flush=True)
            for name in ("fp16.onnx", "fp16io.onnx"):  # keep the disk free: only the optimized model is reused
                for leftover in (os.path.join(folder, name), os.path.join(folder, name + ".data")):
                    if os.path.exists(leftover):
                        os.remove(leftover)
    return results


def _row(r: Result) -> str:
    error = (
        f"{r.fp16_relative_l2:.2e}"
        if r.fp16_relative_l2 is not None
        else f"{r.bench_p50_ms:.1f}ms"
        if r.bench_p50_ms is not None
        else "-"
    )
    return (
        f"{r.model:20s} {r.exporter:11s} {r.command:8s} {r.verdict:7s} {error:>9s} {r.seconds:8.1f} "
        f"{r.peak_rss_mb:7.0f}  {r.message[:160]}"
    )


def markdown(records: list[dict]) -> str:
    """One row per model and exporter, one column per command: verdict, figure, seconds, peak MB."""
    commands = [c for c in COMMANDS if any(r["command"] == c for r in records)]
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for r in records:
        figure = (
            f" {r['fp16_relative_l2']:.2e}"
            if r.get("fp16_relative_l2") is not None
            else f" {r['bench_p50_ms']:.0f} ms"
            if r.get("bench_p50_ms") is not None
            else ""
        )
        retried = " (shapes)" if r["message"].startswith("[with --input-shape") else ""
        cell = f"{r['verdict']}{figure}{retried}, {r['seconds']:.0f} s, {r['peak_rss_mb']:.0f} MB"
        rows.setdefault((r["model"], r["exporter"]), {})[r["command"]] = cell
    lines = [
        "| model | exporter | " + " | ".join(commands) + " |",
        "|---|---|" + "---|" * len(commands),
    ]
    for (model, exporter), cells in rows.items():
        lines.append(f"| {model} | {exporter} | " + " | ".join(cells.get(c, "-") for c in commands) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exports", default=None, help="folder written by benchmarks/real_models.py")
    parser.add_argument("--models", default=None, help="comma-separated model names (default: all in the manifest)")
    parser.add_argument("--exporters", default="torchscript,dynamo")
    parser.add_argument("--commands", default=",".join(COMMANDS), help=f"comma-separated, of {','.join(COMMANDS)}")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per command (default 1800)")
    parser.add_argument("--json", dest="json_path", default=None, metavar="FILE", help="write every record here")
    parser.add_argument(
        "--markdown", metavar="JSON", default=None, help="print the markdown table of a --json file and exit"
    )
    args = parser.parse_args()
    if args.markdown:
        with open(args.markdown) as f:
            print(markdown(json.load(f)))
        return
    if not args.exports:
        parser.error("--exports is required")
    commands = args.commands.split(",")
    unknown = sorted(set(commands) - set(COMMANDS))
    if unknown:
        sys.exit(f"unknown command(s) {unknown}; known: {', '.join(COMMANDS)}")
    with open(os.path.join(args.exports, "manifest.json")) as f:
        manifest: dict[str, dict[str, str]] = json.load(f)
    names = args.models.split(",") if args.models else list(manifest)
    print(f"{'model':20s} {'exporter':11s} {'command':8s} {'verdict':7s} {'figure':>9s} {'seconds':>8s} {'MB':>7s}")
    results: list[Result] = []
    for name in names:
        inputs = os.path.join(args.exports, f"{name}.inputs.npz")
        for exporter in args.exporters.split(","):
            path = manifest.get(name, {}).get(exporter)
            if not path or not os.path.exists(path):
                print(f"{name:20s} {exporter:11s} not exported: {path}", flush=True)
                continue
            results += check_export(
                name, exporter, path, inputs if os.path.exists(inputs) else None, commands, args.timeout
            )
            if args.json_path:  # after every export, so a stopped run keeps what it measured
                tmp = args.json_path + ".tmp"
                with open(tmp, "w") as f:
                    json.dump([asdict(r) | {"verdict": r.verdict} for r in results], f, indent=1)
                os.replace(tmp, args.json_path)


if __name__ == "__main__":
    main()
