"""Shared helpers of the benchmarks: interleaved timing, medians, tables, outputs, memory probes.

The machines these run on have 2 shared, noisy cores, so every comparison
runs its contenders round-robin (A, B, C, A, B, C, ...) after a warm-up and
reports the median; the load average before and after is recorded with the
results so a reader can tell a quiet run from a busy one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probes) is noise in a benchmark's output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "results"
MIN_REPEATS = 5
MEMINFO_KEYS = ("VmHWM", "VmRSS")
KIB = 1024
POLL_SECONDS = 0.05  # memory polling interval of run_tree_measured
PSS_EVERY = 20  # ... which reads Pss (costly, see pss) every this many polls
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MIB = 1024 * 1024

if str(REPO) not in sys.path:  # `python benchmarks/x.py` from anywhere finds dnn_tf
    sys.path.insert(0, str(REPO))

from dnn_tf import files as dio  # noqa: E402
from dnn_tf.cli import ArgumentParser  # noqa: E402

# --------------------------------------------------------------------------- timing

def median(values: Sequence[float]) -> float:
    """The median of ``values``; ValueError when empty."""
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def interleave(contenders: Mapping[str, Callable[[], float | None]], repeats: int, warmup: int = 1,
               log: Callable[[str], None] | None = None, alternate: bool = False) -> dict[str, list[float]]:
    """Times each contender ``repeats`` times, round-robin, after ``warmup`` untimed rounds.

    Args:
      contenders: name -> callable doing one measured unit of work. A callable
        may return the seconds it measured itself (to leave out its own set-up);
        otherwise the wall time of the call is used.
      repeats: timed rounds (each round runs every contender once, in order).
      warmup: untimed rounds first (tracing, compilation, caches).
      log: called with a one-line progress message after each round.
      alternate: every other round runs the contenders in reverse order (A, B, B, A, ...),
        so that none always runs right after the same neighbour.

    Returns:
      name -> list of seconds, one per round.

    Raises:
      ValueError: no contenders or ``repeats < 1``.
    """
    if not contenders or repeats < 1:
        raise ValueError("interleave needs contenders and repeats >= 1")
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(repeats):
        order = list(contenders.items())
        for name, fn in reversed(order) if alternate and r % 2 else order:
            t0 = time.perf_counter()
            measured = fn()
            times[name].append(float(measured) if measured is not None else time.perf_counter() - t0)
        if log:
            log(f"  round {r + 1}/{repeats}: " + ", ".join(f"{n}={times[n][-1]:.3f}s" for n in times))
    return times


def spread(values: Sequence[float]) -> float:
    """Relative spread (max - min) / median, a quick noise indicator."""
    m = median(values)
    return float((max(values) - min(values)) / m) if m else 0.0


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval of the median of ``values``: the order statistics
    ``(k, n + 1 - k)``, with ``k`` the largest rank such that ``P(Binomial(n, 1/2) < k) <= (1 - confidence) / 2``.

    Too few values for that confidence (fewer than 6 at 95%) give their whole range, which covers less.
    """
    x, n = sorted(values), len(values)
    tail, k = 0.0, 0
    while tail + math.comb(n, k) / 2 ** n <= (1 - confidence) / 2:
        tail += math.comb(n, k) / 2 ** n
        k += 1
    return (x[k - 1], x[n - k]) if k else (x[0], x[-1])


def paired_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> dict[str, Any]:
    """Round-by-round ratios ``numerator[i] / denominator[i]`` of two interleaved contenders' times.

    The two ran seconds apart in each round, under much the same load, so the ratio of a
    round is steadier than the ratio of two medians. Returns the ``median`` of the rounds'
    ratios, its 95% confidence interval ``ci_low``/``ci_high`` (``median_interval``), the
    rounds' quartiles ``q25``/``q75`` (the spread) and extremes ``low``/``high``, and ``rounds``
    (every ratio, in order).
    """
    ratios = [float(a) / float(b) for a, b in zip(numerator, denominator, strict=True)]
    q25, _, q75 = (statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3)
    ci_low, ci_high = median_interval(ratios)
    return {"median": median(ratios), "ci_low": ci_low, "ci_high": ci_high, "q25": float(q25), "q75": float(q75),
            "low": min(ratios), "high": max(ratios), "rounds": ratios}


def against(ratio: Mapping[str, float], bar: float) -> str:
    """Where a ``paired_ratios`` result stands against ``bar``: ``"above"`` / ``"below"`` when its 95% interval
    is clear of it, else ``"unclear"``."""
    if ratio["ci_low"] >= bar:
        return "above"
    return "below" if ratio["ci_high"] < bar else "unclear"


def load_average() -> float:
    """The 1-minute load average (other processes on the 2 shared cores show up here)."""
    try:
        return float(os.getloadavg()[0])
    except OSError:
        return float("nan")


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {"cpus": os.cpu_count(), "load_average_1min": load_average(), "python": sys.version.split()[0],
            "time": time.strftime("%Y-%m-%d %H:%M:%S")}


def uptime_load() -> str:
    """The 1-, 5- and 15-minute load averages as ``uptime`` prints them, e.g. ``"1.52, 1.80, 2.01"``."""
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "-"


def flops_per_example(layer_sizes: Sequence[int], backward: bool = True) -> int:
    """Floating-point operations of a fully connected net's matmuls for one example (a multiply-add counts 2).

    With layers ``(a_i, b_i)`` = consecutive entries of ``layer_sizes``:
      forward  = sum_i 2 a_i b_i
      backward = sum_i 2 a_i b_i              (weight gradients, every layer)
               + sum_{i>0} 2 a_i b_i          (input gradients; the first layer needs none)
    so a training step costs ``3 * forward - 2 a_0 b_0``. Biases, ReLUs, dropout and the
    softmax are element-wise and not counted.

    Args:
      layer_sizes: widths from input to logits, e.g. ``MLP.layer_sizes``.
      backward: include the backward pass (training) or not (inference).

    Raises:
      ValueError: fewer than two sizes or a non-positive size.
    """
    sizes = [int(s) for s in layer_sizes]
    if len(sizes) < 2 or min(sizes) <= 0:
        raise ValueError(f"layer_sizes needs at least two positive sizes, got {tuple(layer_sizes)}")
    products = [2 * a * b for a, b in zip(sizes[:-1], sizes[1:])]
    forward = sum(products)
    return forward + sum(products) + sum(products[1:]) if backward else forward


# --------------------------------------------------------------------------- memory

def proc_status() -> dict[str, int]:
    """VmHWM (peak RSS) and VmRSS of this process in bytes, from /proc/self/status (Linux)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in MEMINFO_KEYS:
                    out[key] = int(value.split()[0]) * KIB
    except OSError:
        pass
    if "VmHWM" not in out:  # not Linux: ru_maxrss is KiB on Linux, bytes on macOS
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["VmHWM"] = peak if sys.platform == "darwin" else peak * KIB
        out.setdefault("VmRSS", out["VmHWM"])
    return out


def run_python(code: str, timeout: float = 600.0, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Runs ``code`` in a fresh interpreter and returns the JSON object on its last stdout line.

    The child gets this repo and the benchmarks folder on its path, so it can
    ``import common`` and ``import dnn_tf``.

    Raises:
      RuntimeError: the child failed or printed no JSON.
    """
    child_env = dict(os.environ)
    child_env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "benchmarks"),
                                               child_env.get("PYTHONPATH", "")])
    child_env.update(env or {})
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env=child_env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"child failed (exit {proc.returncode}): " + " | ".join(tail))
    return json.loads(lines[-1])


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (from /proc/<pid>/task/<tid>/children, Linux)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def rss(pid: int) -> int:
    """Resident bytes of a process from /proc/<pid>/statm (cheap: no page-table walk); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return 0


def pss(pid: int) -> int:
    """Proportional set size of a process in bytes (/proc/<pid>/smaps_rollup); 0 once it is gone.

    Pss splits each shared page (say, copy-on-write pages of a forked worker) between the processes
    that map it, so a sum of Pss over a process tree counts every page once; a sum of Rss counts
    shared pages in every process. Reading it walks the page tables (and holds the process's memory
    map lock meanwhile), so it is sampled less often than Rss.
    """
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key == "Pss":
                    return int(rest.split()[0]) * KIB
    except (OSError, ValueError):
        pass
    return 0


def run_tree_measured(code: str, args: Sequence[str], path: Sequence[str | os.PathLike], cwd: str | os.PathLike,
                      timeout: float = 900.0) -> dict[str, Any]:
    """Runs ``python -c code *args`` in ``cwd`` with only ``path`` on PYTHONPATH, polling its memory.

    Returns:
      The JSON object of its last stdout line, plus ``wall`` seconds, ``tree_rss`` / ``tree_pss``: the
      largest sum of Rss (polled every ``POLL_SECONDS``) / Pss (every ``PSS_EVERY`` polls) over the
      process and its descendants, and ``largest_process_rss``: ``ru_maxrss`` of ``os.wait4`` (the
      peak of the largest single process of the tree).

    Raises:
      RuntimeError: the child failed, printed no JSON or ran past ``timeout`` (then it is killed).
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in path))
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=out, stderr=err, cwd=cwd, env=env)
        tree_rss = tree_pss = polls = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 > timeout:
                proc.kill()
            tree = process_tree(proc.pid)
            tree_rss = max(tree_rss, sum(rss(p) for p in tree))
            if polls % PSS_EVERY == 0:
                tree_pss = max(tree_pss, sum(pss(p) for p in tree))
            polls += 1
            time.sleep(POLL_SECONDS)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        lines = [ln for ln in out.read().splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"child failed (exit {proc.returncode}): " + " | ".join(err.read().splitlines()[-5:]))
    return {**json.loads(lines[-1]), "wall": wall, "tree_rss": tree_rss, "tree_pss": tree_pss,
            "largest_process_rss": usage.ru_maxrss * KIB}


# --------------------------------------------------------------------------- output

def fmt(value: Any, digits: int = 2) -> str:
    """A table cell: floats with ``digits`` decimals and thousands separators, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.{digits}f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 2) -> str:
    """A GitHub markdown table."""
    cells = [[fmt(c, digits) for c in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def write_results(out_dir: str | os.PathLike, stem: str, markdown: str, data: Mapping[str, Any]) -> list[Path]:
    """Writes ``out_dir/stem.md`` and ``out_dir/stem.json`` atomically; returns the paths."""
    out = Path(out_dir)
    md_path, json_path = out / f"{stem}.md", out / f"{stem}.json"
    dio.write_text(md_path, markdown.rstrip() + "\n")
    dio.write_json(json_path, dict(data))
    return [md_path, json_path]


def publish(out_dir: str | os.PathLike, stem: str, result: Mapping[str, Any], markdown: str,
            notes: Sequence[str] = ()) -> int:
    """Writes ``stem.md``/``stem.json``, prints the table, ``notes``, then ``result["key_lines"]`` last.

    Returns:
      0, the benchmark's exit status.
    """
    write_results(out_dir, stem, markdown, result)
    print(markdown)
    for line in (*notes, *result["key_lines"]):
        print(line)
    return 0


def cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None, prog: str) -> int:
    """Runs a benchmark's ``main`` with the package's one-line errors and exit 2."""
    from dnn_tf.cli import run

    return run(main, argv, prog)


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Saves a matplotlib figure as PNG atomically and closes it."""
    import matplotlib.pyplot as plt

    with dio.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ratio_line(name: str, value: float) -> str:
    """The machine-readable summary line ``ratio NAME=R``."""
    return f"ratio {name}={value:.2f}"


def log(message: str) -> None:
    """Progress on stderr, so stdout stays the table and the key lines."""
    print(message, file=sys.stderr, flush=True)


class _OutGiven(argparse.Action):
    """``--out``, remembering that it was given (``out_dir``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.out, namespace.out_given = values, True


def parser(prog: str, description: str) -> ArgumentParser:
    """The arguments every benchmark takes: --out, --tiny, --repeats."""
    p = ArgumentParser(prog=prog, description=description)
    p.add_argument("--out", default=str(DEFAULT_OUT), action=_OutGiven,
                   help="folder for the .md/.json/.png results (default: results/; --tiny: a new temporary one)")
    p.set_defaults(out_given=False)
    p.add_argument("--tiny", action="store_true", help="tiny sizes, a few seconds (smoke test)")
    p.add_argument("--repeats", type=int, default=None, help=f"timed rounds (default {MIN_REPEATS}; --tiny: 2)")
    return p


def add_glyphs_flag(p: ArgumentParser) -> None:
    """``--glyphs PATH``: a notMNIST-like archive whose real glyphs a benchmark builds its data from."""
    p.add_argument("--glyphs", default=None, metavar="PATH",
                   help="a notMNIST-like .tar.gz of real glyphs to build the data from, say notMNIST_small_dev "
                        "(default: glyphs generated by tests/fixtures.py)")


def out_dir(args) -> Path:
    """Where a benchmark writes: ``--out``; with ``--tiny`` and no ``--out``, a new temporary folder.

    A smoke run's numbers must never replace the committed results.

    Raises:
      ValueError: ``--tiny`` with ``--out`` the committed results folder.
    """
    out = Path(args.out).resolve()
    if args.tiny and out == DEFAULT_OUT.resolve():
        if args.out_given:
            raise ValueError(f"--tiny does not write into {DEFAULT_OUT.name}/ (the committed results); "
                             "give another --out")
        out = Path(tempfile.mkdtemp(prefix="dnn_tf_bench_tiny_"))
        log(f"--tiny: the results go to {out}")
    out.mkdir(parents=True, exist_ok=True)
    return out


def repeats_of(args, default: int = MIN_REPEATS) -> int:
    """The number of timed rounds: --repeats, else 2 with --tiny, else ``default``."""
    if args.repeats is not None:
        if args.repeats < 1:
            raise ValueError("--repeats must be >= 1")
        return args.repeats
    return 2 if args.tiny else default


def record(stem: str, argv: Sequence[str] | None, args, placeholders: Mapping[str, str],
           default_repeats: int = MIN_REPEATS) -> dict[str, Any]:
    """The head of a benchmark's result: its name, the command that ran it (``command_line``), the machine and
    ``uptime``'s load at the start, ``tiny`` and the ``repeats`` (``repeats_of``); ``finish`` adds the end's."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return {"benchmark": stem, "command": command_line(f"{stem}.py", argv, placeholders), "machine": machine(),
            "uptime_start": uptime_load(), "tiny": bool(args.tiny), "repeats": repeats_of(args, default_repeats),
            "started": time.perf_counter()}


def finish(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with the machine and load at the end and its ``seconds``, since ``record``."""
    result.update(machine_end=machine(), uptime_end=uptime_load(), seconds=time.perf_counter() - result.pop("started"))
    return result


def command_line(script: str, argv: Sequence[str], placeholders: Mapping[str, str]) -> str:
    """How a benchmark was run, for its results: ``python benchmarks/SCRIPT ARGS``, with the value of every
    option in ``placeholders`` (e.g. ``{"--checkout": "CHECKOUT"}``; ``--out`` is always ``OUT``) written as its
    placeholder: no machine's paths in committed results."""
    words, hide, placeholders = [], None, {"--out": "OUT", **placeholders}
    for arg in argv:
        option, eq, _ = arg.partition("=")
        if hide:
            words.append(hide)
            hide = None
        elif option in placeholders and eq:
            words.append(f"{option}={placeholders[option]}")
        else:
            words.append(arg)
            hide = placeholders.get(arg)
    return " ".join(["python", f"benchmarks/{script}", *words])
