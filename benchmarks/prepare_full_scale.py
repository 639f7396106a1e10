"""The course's two-archive prepare at full scale: notMNIST_large- and notMNIST_small-shaped archives.

Archives: the real per-letter file counts (notMNIST_large 529,119 files, notMNIST_small 18,726) with
5 and 2 broken members (zero-byte or truncated PNGs), so 529,114 and 18,724 readable images as in
the real ones; laid out like the originals (``notMNIST_large/A/<base64 name>.png``, folders in
order, files in random order inside a folder, one name in 500 over 100 characters: GNU long-name
headers), gzip-compressed. Each image is a real glyph of a notMNIST-like archive (``--glyphs``;
without it, glyphs rendered by ``tests/fixtures.py``) randomly scaled and shifted, so most are
distinct. They are built once into ``--cache`` (default ``${XDG_CACHE_HOME:-~/.cache}/dnn_tf/bench``),
atomically: a killed build leaves only a temporary file, never a half archive under the final name.

Measured, each in a fresh subprocess (run from a temporary folder): ``dnn_tf.data.prepare.prepare(large,
small, out_dir=...)`` (what ``dnn-tf-prepare --train-archive L --test-archive S`` does: 200,000 /
10,000 / 10,000), its wall time (imports included), decode rate (members / decode seconds, from its
report) and peak memory; ``--compare-with DIR`` also runs the ``dnn_tf`` of another checkout (say a
``git worktree`` of an older commit), interleaved, and checks that both wrote identical arrays. Once per
set of archives (kept beside them): the course's extract-then-read (``prepare_throughput.course_read``
on both archives). Peak memory of
the process tree (the prepare process and its decoding workers): the largest sum over the tree of
RSS (polled every ``common.POLL_SECONDS`` from /proc/<pid>/statm), and of PSS (shared pages split
between the processes that map them; sampled less often); and the largest single process's exact
peak (``ru_maxrss``).
"""

from __future__ import annotations

import base64
import io
import json
import multiprocessing
import os
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402

from dnn_tf.notmnist import IMAGE_SIZE, LETTERS  # noqa: E402

PROG = "prepare_full_scale"
STEM = "prepare_full_scale"
RECIPE = 1  # part of the cached archives' names: bump it when the archives change
LARGE, SMALL = "notMNIST_large", "notMNIST_small"
COUNTS = {LARGE: (52912,) * 9 + (52911,), SMALL: (1873,) * 6 + (1872,) * 4}  # files per letter
# (letter, kind) of the broken members; the real notMNIST_small's two are zero-byte files in A and F.
BROKEN = {LARGE: (("A", "empty"), ("B", "truncated"), ("D", "empty"), ("F", "truncated"), ("I", "truncated")),
          SMALL: (("A", "empty"), ("F", "empty"))}
TINY_DIVISOR = 500  # --tiny: counts divided by this (at least MIN_TINY_PER_CLASS per letter)
MIN_TINY_PER_CLASS = 12
TINY_SIZES = (500, 50, 50)  # --tiny prepare: train, valid, test sizes
SCALE_RANGE = (0.8, 1.2)
SHIFT_PIXELS = 3.0
LONG_NAME_EVERY, LONG_NAME_PAD = 500, 120
NAME_PAD = (0, 40)  # random extra characters in a name
TASK_IMAGES = 4096  # images rendered per task of the build pool
COMPRESSLEVEL = 6  # gzip's default, like the originals
FALLBACK_PER_CLASS = 300  # rendered glyphs per letter without --glyphs
SEED = 2011
BUILD_WORKERS = 2
ROUNDS = 3  # prepare rounds (median); --tiny: 1
TARGET_SECONDS = 30.0
TARGET_RSS_MIB = 1600.0
CHILD_TIMEOUT = 900
COURSE_RESULT = "course.json"  # the course baseline's figures, beside the archives they were measured on


# --------------------------------------------------------------------------- the archives


def default_cache() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/dnn_tf/bench``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dnn_tf" / "bench"


def counts(name: str, tiny: bool) -> tuple[int, ...]:
    """Files per letter of archive ``name``."""
    return tuple(max(n // TINY_DIVISOR, MIN_TINY_PER_CLASS) for n in COUNTS[name]) if tiny else COUNTS[name]


def readable(name: str, tiny: bool) -> int:
    """Readable images of archive ``name``: its files minus its broken members."""
    return sum(counts(name, tiny)) - len(BROKEN[name])


def load_glyphs(glyphs: str | None) -> tuple[list[np.ndarray], str]:
    """uint8 glyphs per letter: the images of the archive ``glyphs``, else rendered fixture glyphs."""
    if glyphs:
        from dnn_tf.data.decode import read_images

        got = read_images(glyphs, normalized=False)
        per_class = [got.images[got.labels == c] for c in range(len(LETTERS))]
        if not all(len(g) for g in per_class):
            raise ValueError(f"--glyphs {glyphs}: a letter without readable images")
        return per_class, f"real glyphs of {Path(glyphs).name} ({len(got.labels):,} images), scaled and shifted"
    sys.path.insert(0, str(common.REPO / "tests"))
    from fixtures import make_glyph_images

    images, labels = make_glyph_images(FALLBACK_PER_CLASS, seed=SEED)
    return [images[labels == c] for c in range(len(LETTERS))], (
        f"GENERATED glyphs (tests/fixtures.py, {len(labels):,}; no --glyphs given), scaled and shifted")


_GLYPHS: list[np.ndarray] = []  # the build pool's glyphs (set in each worker)


def _init_worker(glyphs: list[np.ndarray]) -> None:
    _GLYPHS[:] = glyphs


def _render(task: tuple[int, int, int]) -> list[bytes]:
    """PNGs ``start..start+n`` of letter ``label``: random glyphs of the letter, scaled and shifted."""
    from PIL import Image

    label, start, n = task
    rng = np.random.default_rng([SEED, label, start])
    pool, centre, out = _GLYPHS[label], IMAGE_SIZE / 2, []
    for _ in range(n):
        glyph = Image.fromarray(pool[int(rng.integers(len(pool)))], mode="L")
        s = float(rng.uniform(*SCALE_RANGE))
        dx, dy = (float(v) for v in rng.uniform(-SHIFT_PIXELS, SHIFT_PIXELS, 2))
        # output (x, y) <- input ((x - c - dx) / s + c, (y - c - dy) / s + c)
        coeffs = (1 / s, 0.0, centre - (centre + dx) / s, 0.0, 1 / s, centre - (centre + dy) / s)
        image = glyph.transform((IMAGE_SIZE, IMAGE_SIZE), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def _names(label: int, n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct base64-looking file names (the real ones are base64 of font file names)."""
    names = []
    for i in range(n):
        pad = LONG_NAME_PAD if i % LONG_NAME_EVERY == LONG_NAME_EVERY - 1 else int(rng.integers(*NAME_PAD))
        text = f"{LETTERS[label]}-font-{i:06d}{'x' * pad}.ttf".encode()
        names.append(base64.b64encode(text).decode().replace("/", "_").replace("+", "-") + ".png")
    return names


def build(path: Path, name: str, tiny: bool, glyphs: list[np.ndarray]) -> None:
    """Writes archive ``name`` to ``path`` atomically (see the module docstring)."""
    rng = np.random.default_rng([SEED, len(name)])
    per_letter = counts(name, tiny)
    tasks = [(label, start, min(TASK_IMAGES, n - start))
             for label, n in enumerate(per_letter) for start in range(0, n, TASK_IMAGES)]
    broken: dict[int, list[str]] = {}
    for letter, kind in BROKEN[name]:
        broken.setdefault(LETTERS.index(letter), []).append(kind)
    mtime = int(time.time())

    def add(tar: tarfile.TarFile, member: str, data: bytes | None) -> None:
        info = tarfile.TarInfo(member)
        info.mtime, info.mode = mtime, 0o644 if data is not None else 0o755
        if data is None:
            info.type = tarfile.DIRTYPE
        else:
            info.size = len(data)
        tar.addfile(info, io.BytesIO(data) if data is not None else None)

    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ctx.Pool(BUILD_WORKERS, initializer=_init_worker, initargs=(glyphs,)) as pool, \
            common.dio.atomic_path(path) as tmp, \
            tarfile.open(tmp, "w:gz", compresslevel=COMPRESSLEVEL, format=tarfile.GNU_FORMAT) as tar:
        add(tar, name, None)
        label = -1
        for (task_label, start, n), pngs in zip(tasks, pool.imap(_render, tasks)):
            if task_label != label:  # a new folder: its entry, then its files in random order
                label = task_label
                add(tar, f"{name}/{LETTERS[label]}", None)
                names, order = _names(label, per_letter[label], rng), rng.permutation(per_letter[label])
                kinds = broken.get(label, [])
            for k, data in zip(order[start:start + n], pngs):
                if k < len(kinds):  # the folder's first names are its broken members
                    data = b"" if kinds[k] == "empty" else data[: len(data) // 2]
                add(tar, f"{name}/{LETTERS[label]}/{names[k]}", data)


def cache_folder(cache: Path, tiny: bool, glyphs: str | None) -> Path:
    """The folder of one recipe, size and glyph source in ``cache``.

    Keyed by the glyph archive's content, not its path or mtime: a copy or a re-provisioned folder
    holds the same glyphs and must not rebuild 240 MB of archives.
    """
    key = common.dio.sha256_file(glyphs)[:12] if glyphs else "generated"
    return Path(cache) / f"r{RECIPE}-{'tiny' if tiny else 'full'}-{key}"


def cached_archives(cache: Path, tiny: bool, glyphs: str | None) -> tuple[dict[str, Path], dict]:
    """The two archives, built into ``cache`` unless there; returns their paths and how they were made."""
    folder = cache_folder(cache, tiny, glyphs)
    paths = {n: folder / f"{n}.tar.gz" for n in (LARGE, SMALL)}
    info = {"cache": str(cache), "built_seconds": None, "paths": {n: str(p) for n, p in paths.items()},
            "glyphs": (f"real glyphs of {Path(glyphs).name}, scaled and shifted" if glyphs else
                       "GENERATED glyphs (tests/fixtures.py; no --glyphs given), scaled and shifted")}
    missing = [n for n, p in paths.items() if not p.is_file()]
    if missing:
        start = time.perf_counter()
        pool, info["glyphs"] = load_glyphs(glyphs)
        for name in missing:
            common.log(f"building {paths[name]} ({sum(counts(name, tiny)):,} files; once, then cached) ...")
            build(paths[name], name, tiny, pool)
        info["built_seconds"] = time.perf_counter() - start
        common.log(f"built in {info['built_seconds']:.0f} s")
    info["bytes"] = {n: p.stat().st_size for n, p in paths.items()}
    return paths, info


# --------------------------------------------------------------------------- measurement

PREPARE_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from dnn_tf.data.prepare import prepare
report = prepare(sys.argv[1], sys.argv[2], out_dir=sys.argv[3], **json.loads(sys.argv[4]))
out = {"seconds": time.perf_counter() - t0, "decode": report["decode"], "phases": report["seconds"],
       "sizes": report["sizes"], "skipped": report["skipped"]["count"]}
print(json.dumps(out))
"""
COURSE_CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
from prepare_throughput import course_read
letters = [course_read(src, os.path.join(sys.argv[3], str(i))) for i, src in enumerate(sys.argv[1:3])]
print(json.dumps({"seconds": time.perf_counter() - t0, "images": sum(len(a) for arrays in letters for a in arrays)}))
"""


def prepare_round(paths: dict[str, Path], code_dir: Path, out: Path, tiny: bool) -> dict:
    sizes = dict(zip(("train_size", "valid_size", "test_size"), TINY_SIZES)) if tiny else {}
    r = common.run_tree_measured(PREPARE_CHILD, [str(paths[LARGE]), str(paths[SMALL]), str(out), json.dumps(sizes)],
                                 [code_dir], out.parent, CHILD_TIMEOUT)
    common.log(f"  {code_dir}: {r['seconds']:.1f} s, decode {r['decode']['images_per_second']:,.0f} images/s, "
               f"tree RSS {r['tree_rss'] / common.MIB:,.0f} MiB")
    return r


def identical(a: Path, b: Path) -> dict:
    """Compares every array of notMNIST.pickle and of the per-class pickles in output folders ``a`` and ``b``."""
    import pickle

    files = ["notMNIST.pickle"] + [f"{stem}/{x}.pickle" for stem in (LARGE, SMALL) for x in LETTERS]
    differ = []
    for name in files:
        with open(a / name, "rb") as fa, open(b / name, "rb") as fb:
            x, y = pickle.load(fa), pickle.load(fb)  # plain pickle.load, as the course's notebooks do
        pairs = [(k, x[k], y.get(k)) for k in x] if isinstance(x, dict) else [("", x, y)]
        if isinstance(x, dict) and list(x) != list(y):
            differ.append(f"{name}: keys")
        for key, u, v in pairs:
            if not (isinstance(v, np.ndarray) and u.dtype == v.dtype and np.array_equal(u, v)):
                differ.append(f"{name}{':' + key if key else ''}")
    return {"compared": len(files), "identical": not differ, "differ": differ}


def course_baseline(paths: dict[str, Path], scratch: Path, again: bool) -> dict:
    """The course's extract-then-read on both archives, measured once per set of archives (kept in
    ``course.json`` beside them; the course's code never changes) unless ``again``."""
    kept = paths[LARGE].parent / COURSE_RESULT
    previous = None if again else common.dio.read_json(kept)
    if isinstance(previous, dict):
        common.log(f"course baseline: measured {previous['measured']} ({kept}; --course-again measures it again)")
        return previous
    common.log("course baseline (extract-then-read), once")
    course = common.run_tree_measured(COURSE_CHILD, [str(paths[LARGE]), str(paths[SMALL]), str(scratch / "x")],
                                      [common.REPO, common.REPO / "benchmarks"], scratch, CHILD_TIMEOUT)
    result = {"seconds": course["seconds"], "all_seconds": [course["seconds"]],
              "decode_images_per_s": course["images"] / course["seconds"], "measured": time.strftime("%Y-%m-%d %H:%M"),
              **{k: course[k] for k in ("tree_rss", "tree_pss", "largest_process_rss")}}
    common.dio.write_json(kept, result)
    return result


def summary(runs: list[dict]) -> dict:
    seconds = [r["seconds"] for r in runs]
    return {"seconds": common.median(seconds), "all_seconds": seconds,
            "decode_images_per_s": common.median([r["decode"]["images_per_second"] for r in runs]),
            "decode_seconds": common.median([r["decode"]["seconds"] for r in runs]),
            "tree_rss": max(r["tree_rss"] for r in runs), "tree_pss": max(r["tree_pss"] for r in runs),
            "largest_process_rss": max(r["largest_process_rss"] for r in runs),
            "phases": runs[-1]["phases"], "sizes": runs[-1]["sizes"], "skipped": runs[-1]["skipped"]}


def render(result: dict) -> str:
    mib, m, a = common.MIB, result["machine"], result["archives"]
    rows = []
    for label, s in result["contenders"].items():
        rows.append([label, s["seconds"], ", ".join(f"{x:.1f}" for x in s["all_seconds"]),
                     s.get("decode_images_per_s"), s["tree_rss"] / mib, s["tree_pss"] / mib,
                     s["largest_process_rss"] / mib])
    phases = result["contenders"]["ours"]["phases"]
    built = (f"built in {a['built_seconds']:.0f} s by this run" if a["built_seconds"] else "cached")
    same = result.get("identity")
    return "\n".join([
        "# Full-scale two-archive prepare (notMNIST_large + notMNIST_small shaped)",
        "",
        f"Archives: {readable(LARGE, result['tiny']):,} + {readable(SMALL, result['tiny']):,} readable PNGs "
        f"(+ {len(BROKEN[LARGE])} + {len(BROKEN[SMALL])} broken), {a['glyphs']}; "
        f"{a['bytes'][LARGE] / mib:.0f} + {a['bytes'][SMALL] / mib:.1f} MiB of .tar.gz, {built}. Machine: "
        f"{m['cpus']} CPUs, load average {m['load_average_1min']:.2f} at start, "
        f"{result['machine_end']['load_average_1min']:.2f} at the end (shared).",
        "",
        common.markdown_table(["contender", "seconds (median)", "all rounds", "decode images/s",
                               "peak tree RSS MiB", "peak tree PSS MiB", "largest process MiB"], rows),
        "",
        "`ours` = `dnn_tf.data.prepare.prepare(large, small, out_dir=...)` in a fresh process (imports included); "
        "`course` = the course's extract-then-read (`prepare_throughput.course_read` on both archives: "
        "`tarfile.extractall`, then `PIL.Image.open` per file), measured once per set of archives"
        + (f" ({result['contenders']['course']['measured']})" if "course" in result["contenders"] else "")
        + ". Peak tree RSS / PSS: the largest sum "
        f"over the process and its decoding workers of RSS, polled every {common.POLL_SECONDS} s from "
        f"/proc/<pid>/statm, and of PSS (/proc/<pid>/smaps_rollup, every {common.POLL_SECONDS * common.PSS_EVERY:g} "
        "s); largest process: `ru_maxrss` of `os.wait4` (the prepare process's own peak).",
        "",
        "Phases of the last `ours` run (s): " + ", ".join(f"{k} {v:.2f}" for k, v in phases.items()) + ".",
        "",
        (f"Identity with `{result['compare_with']}`: {same['compared']} pickles compared, "
         + ("every array identical." if same["identical"] else f"DIFFERENT: {', '.join(same['differ'])}.")
         if same else "No `--compare-with`: no identity check in this run."),
        "",
        f"Targets: <= {TARGET_SECONDS:.0f} s wall, <= {TARGET_RSS_MIB:,.0f} MiB peak tree RSS: "
        f"{'met' if result['met'] else 'not met'}.",
        "",
    ])


def main(argv=None) -> int:
    p = common.parser(PROG, __doc__.splitlines()[0])
    common.add_glyphs_flag(p)
    p.add_argument("--cache", default=None, help=f"archive cache folder (default {default_cache()})")
    p.add_argument("--compare-with", default=None, metavar="DIR",
                   help="also time the dnn_tf of this checkout (e.g. a git worktree of an older commit), "
                        "interleaved, and compare the arrays both write")
    p.add_argument("--no-course", action="store_true", help="leave the course baseline out")
    p.add_argument("--course-again", action="store_true",
                   help="measure the course baseline again (by default its figures are measured once per set of "
                        "archives and kept beside them: it takes 5-8 minutes)")
    args = p.parse_args(argv)
    rounds = 1 if args.tiny and args.repeats is None else (args.repeats or ROUNDS)
    start, machine = time.perf_counter(), common.machine()
    paths, archives = cached_archives(Path(args.cache) if args.cache else default_cache(), args.tiny, args.glyphs)
    scratch = Path(tempfile.mkdtemp(prefix="dnn_tf_full_scale_"))
    codes = {"ours": common.REPO} | ({"baseline": Path(args.compare_with).resolve()} if args.compare_with else {})
    runs: dict[str, list[dict]] = {c: [] for c in codes}
    try:
        for r in range(rounds):
            common.log(f"round {r + 1}/{rounds}")
            for label, code in codes.items():
                out = scratch / f"{label}-out"
                shutil.rmtree(out, ignore_errors=True)
                runs[label].append(prepare_round(paths, code, out, args.tiny))
        identity = identical(scratch / "ours-out", scratch / "baseline-out") if args.compare_with else None
        for label in codes:
            shutil.rmtree(scratch / f"{label}-out", ignore_errors=True)
        contenders = {c: summary(rs) for c, rs in runs.items()}
        if not args.no_course:
            contenders["course"] = course_baseline(paths, scratch, args.course_again)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ours = contenders["ours"]
    result = {"benchmark": STEM, "machine": machine, "machine_end": common.machine(), "tiny": bool(args.tiny),
              "rounds": rounds, "archives": archives, "contenders": contenders, "runs": runs,
              "compare_with": args.compare_with, "identity": identity,
              "targets": {"seconds": TARGET_SECONDS, "tree_rss_mib": TARGET_RSS_MIB},
              "met": ours["seconds"] <= TARGET_SECONDS and ours["tree_rss"] / common.MIB <= TARGET_RSS_MIB,
              "seconds": time.perf_counter() - start}
    lines = [f"full_scale prepare_seconds={ours['seconds']:.1f} peak_rss_mib={ours['tree_rss'] / common.MIB:.0f} "
             f"decode_images_per_s={ours['decode_images_per_s']:.0f}"]
    for label in ("baseline", "course"):
        if label in contenders:
            c = contenders[label]
            lines.append(f"full_scale {label}_seconds={c['seconds']:.1f} {label}_peak_rss_mib="
                         f"{c['tree_rss'] / common.MIB:.0f} {label}_images_per_s={c['decode_images_per_s']:.0f}")
            lines.append(common.ratio_line(f"full_scale_{label}/ours_seconds", c["seconds"] / ours["seconds"]))
    if identity:
        lines.append(f"full_scale identical_arrays={'yes' if identity['identical'] else 'NO'}")
    result["key_lines"] = lines
    return common.publish(args.out, STEM, result, render(result), notes=[f"archives: {archives['glyphs']}"])


def cli(argv=None) -> int:
    return common.cli(main, argv, PROG)


if __name__ == "__main__":
    sys.exit(cli())
