"""The course's two-archive prepare at full scale: notMNIST_large- and notMNIST_small-shaped archives.

Archives: the real per-letter counts and broken members (529,114 + 18,724 readable PNGs), laid out like the
originals (GNU long-name headers included), each image a real glyph of ``--glyphs`` (else of
``tests/fixtures.py``) scaled and shifted; built once, atomically, into ``--cache``. Measured in fresh
processes, interleaved: ``prepare(large, small, out_dir=...)`` (``dnn-tf-prepare``'s two-archive run), wall
and CPU time, decode rate and peak memory of the process tree; with ``--compare-with DIR`` also another
checkout's ``dnn_tf``, with ``--variants`` ours with each fast path of dnn_tf/data off, and whether all wrote
identical arrays; once per set of archives the course's extract-then-read. ``--tiny`` never writes results/.
"""

from __future__ import annotations

import base64
import io
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402
from prepare_throughput import out_folder  # noqa: E402

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
# --variants: ours with one fast path off (module, attribute, value set in the child before prepare runs)
VARIANTS = {"ours, tarfile for every header": ("dnn_tf.data.archive", "FAST_HEADERS", False),
            "ours, Image.open for every PNG": ("dnn_tf.data.png", "PLAIN_FAST_PATH", False)}


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
        info.type, info.size = (tarfile.REGTYPE, len(data)) if data is not None else (tarfile.DIRTYPE, 0)
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
    """The folder of one recipe, size and glyph source in ``cache``: keyed by the glyph archive's content, not
    its path or mtime (a copy of the same glyphs must not rebuild 240 MB of archives)."""
    key = common.dio.sha256_file(glyphs)[:12] if glyphs else "generated"
    return Path(cache) / f"r{RECIPE}-{'tiny' if tiny else 'full'}-{key}"


def shown(path: Path) -> str:
    """``path`` as the results show it: ``~/...`` under the home folder (no machine's paths in committed files)."""
    home, path = str(Path.home()), str(path)
    return "~" + path[len(home):] if path.startswith(home + os.sep) else path


def checkout_name(path: str | os.PathLike) -> str:
    """A checkout as the results name it: its commit, else its folder's name."""
    git = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         check=False) if shutil.which("git") else None
    return git.stdout.strip() if git and git.returncode == 0 else Path(path).name


def command(args) -> str:
    """This run's command line as the results show it (no machine's paths)."""
    flags = [f"--glyphs path/to/{Path(args.glyphs).name}"] if args.glyphs else []
    flags += [f"--compare-with path/to/{checkout_name(args.compare_with)}"] if args.compare_with else []
    flags += [f"--{k.replace('_', '-')}" for k in ("variants", "no_course", "tiny", "course_again") if getattr(args, k)]
    flags += [f"--repeats {args.repeats}"] if args.repeats else []
    return " ".join(["python benchmarks/prepare_full_scale.py", *flags])


def cached_archives(cache: Path, tiny: bool, glyphs: str | None) -> tuple[dict[str, Path], dict]:
    """The two archives, built into ``cache`` unless there; returns their paths and how they were made."""
    folder = cache_folder(cache, tiny, glyphs)
    paths = {n: folder / f"{n}.tar.gz" for n in (LARGE, SMALL)}
    info = {"cache": shown(cache), "built_seconds": None, "paths": {n: shown(p) for n, p in paths.items()},
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
import importlib, json, os, resource, sys, time
t0 = time.perf_counter()
module, code, settings = json.loads(sys.argv[5])
prepare = importlib.import_module(module)
if not os.path.abspath(prepare.__file__).startswith(code + os.sep):  # an installed dnn_tf must not stand in
    sys.exit(f"{module} came from {prepare.__file__}, not from {code}")
for name, attr, value in settings:
    setattr(importlib.import_module(name), attr, value)
report = prepare.prepare(sys.argv[1], sys.argv[2], out_dir=sys.argv[3], **json.loads(sys.argv[4]))
cpu = sum(r.ru_utime + r.ru_stime for r in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))
out = {"seconds": time.perf_counter() - t0, "cpu_seconds": cpu, "decode": report["decode"],
       "phases": report["seconds"], "sizes": report["sizes"], "skipped": report["skipped"]["count"]}
print(json.dumps(out))
"""
COURSE_CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
from prepare_throughput import course_read
letters = [course_read(src, os.path.join(sys.argv[3], str(i))) for i, src in enumerate(sys.argv[1:3])]
print(json.dumps({"seconds": time.perf_counter() - t0, "images": sum(len(a) for arrays in letters for a in arrays)}))
"""


def prepare_round(paths: dict[str, Path], code_dir: Path, settings: list, out: Path, tiny: bool) -> dict:
    """One prepare by the dnn_tf of ``code_dir`` (with ``settings``: (module, attribute, value)), measured."""
    sizes = dict(zip(("train_size", "valid_size", "test_size"), TINY_SIZES)) if tiny else {}
    module = "dnn_tf.data.prepare" if (code_dir / "dnn_tf" / "data" / "prepare.py").is_file() else "dnn_tf.prepare"
    load = os.getloadavg()[0]
    r = common.run_tree_measured(PREPARE_CHILD, [str(paths[LARGE]), str(paths[SMALL]), str(out), json.dumps(sizes),
                                                 json.dumps([module, str(code_dir), settings])],
                                 [code_dir], out.parent, CHILD_TIMEOUT)
    r["load_average_1min"] = load
    common.log(f"  {code_dir}{' ' + str(settings) if settings else ''}: {r['seconds']:.1f} s ({r['cpu_seconds']:.1f} "
               f"CPU s), tree RSS {r['tree_rss'] / common.MIB:,.0f} MiB, load average {load:.2f}")
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
            "load_averages": [r.get("load_average_1min") for r in runs],
            "cpu_seconds": common.median([r["cpu_seconds"] for r in runs]),
            "decode_images_per_s": common.median([r["decode"]["images_per_second"] for r in runs]),
            "decode_seconds": common.median([r["decode"]["seconds"] for r in runs]),
            "tree_rss": max(r["tree_rss"] for r in runs), "tree_pss": max(r["tree_pss"] for r in runs),
            "largest_process_rss": max(r["largest_process_rss"] for r in runs),
            "phases": runs[-1]["phases"], "sizes": runs[-1]["sizes"], "skipped": runs[-1]["skipped"]}


def render(result: dict) -> str:
    mib, machine, a, contenders = common.MIB, result["machine"], result["archives"], result["contenders"]
    rows = [[label, c["seconds"], ", ".join(f"{x:.1f}" + (f" ({load:.1f})" if load is not None else "") for x, load
                                            in zip(c["all_seconds"], c.get("load_averages") or [None] * 9)),
             c.get("cpu_seconds"), c.get("decode_images_per_s"), c["tree_rss"] / mib, c["tree_pss"] / mib,
             c["largest_process_rss"] / mib]
            for label, c in contenders.items()]
    built = (f"built in {a['built_seconds']:.0f} s by this run" if a["built_seconds"] else "cached")
    identities = [f"`{other}`{' (' + str(result['compare_with']) + ')' if other == 'baseline' else ''} "
                  f"{'identical to' if same['identical'] else 'DIFFERENT from'} `ours` ({same['compared']} "
                  f"pickles compared{'' if same['identical'] else ': ' + ', '.join(same['differ'])})"
                  for other, same in (result.get("identities") or {}).items()]
    variants = [f"`{label}` (`{module}.{attribute} = {value}`) / `ours`: "
                f"{contenders[label]['seconds'] / contenders['ours']['seconds']:.2f} wall, "
                f"{contenders[label]['cpu_seconds'] / contenders['ours']['cpu_seconds']:.2f} CPU"
                for label, (module, attribute, value) in VARIANTS.items() if label in contenders]
    return "\n".join([
        "# Full-scale two-archive prepare (notMNIST_large + notMNIST_small shaped)",
        "",
        *([f"Command: `{result['command']}`.", ""] if result.get("command") else []),
        f"Archives: {readable(LARGE, result['tiny']):,} + {readable(SMALL, result['tiny']):,} readable PNGs "
        f"(+ {len(BROKEN[LARGE])} + {len(BROKEN[SMALL])} broken), {a['glyphs']}; "
        f"{a['bytes'][LARGE] / mib:.0f} + {a['bytes'][SMALL] / mib:.1f} MiB of .tar.gz, {built}. Machine: "
        f"{machine['cpus']} CPUs, load average {machine['load_average_1min']:.2f} at start, "
        f"{result['machine_end']['load_average_1min']:.2f} at the end (shared).",
        "",
        common.markdown_table(["contender", "seconds (median)", "all rounds (load average)", "CPU s (median)",
                               "decode images/s",
                               "peak tree RSS MiB", "peak tree PSS MiB", "largest process MiB"], rows),
        "",
        "`ours` = `dnn_tf.data.prepare.prepare(large, small, out_dir=...)` in a fresh process (imports included); "
        "`course` = the course's extract-then-read (`tarfile.extractall`, then `PIL.Image.open` per file), once per "
        f"set of archives{' (' + contenders['course']['measured'] + ')' if 'course' in contenders else ''}. Peak "
        f"tree RSS / PSS: sums over the process and its workers, polled every {common.POLL_SECONDS} s; largest "
        "process: `ru_maxrss`. CPU s: user + system time of the prepare and its workers (less sensitive than wall "
        "time to other processes on a shared machine).",
        "",
        "Phases of the last `ours` run (s): "
        + ", ".join(f"{k} {v:.2f}" for k, v in contenders["ours"]["phases"].items()) + ".",
        "",
        ("Identity: " + "; ".join(identities) + "." if identities else "No `--compare-with`: no identity check."),
        "",
        *([f"Fast paths off (`--variants`), ratios of the medians: {'; '.join(variants)}.", ""] if variants else []),
        f"Targets: <= {TARGET_SECONDS:.0f} s wall, <= {TARGET_RSS_MIB:,.0f} MiB peak tree RSS: "
        f"{'met' if result['met'] else 'not met'}.",
        "",
    ])


def main(argv=None) -> int:
    p = common.parser(PROG, __doc__.splitlines()[0])
    common.add_glyphs_flag(p)
    p.add_argument("--cache", default=None, help=f"archive cache folder (default {default_cache()})")
    p.add_argument("--compare-with", default=None, metavar="DIR", help="also time the dnn_tf of this checkout "
                   "(a git worktree of an older commit), interleaved, and compare the arrays both write")
    p.add_argument("--no-course", action="store_true", help="leave the course baseline out")
    p.add_argument("--course-again", action="store_true", help="measure the course baseline again (by default "
                   "once per set of archives, kept beside them: it takes 5-8 minutes)")
    p.add_argument("--variants", action="store_true",
                   help="also time ours with each fast path off (tarfile for every header, Image.open for every PNG)")
    args = p.parse_args(argv)
    rounds = 1 if args.tiny and args.repeats is None else (args.repeats or ROUNDS)
    start, machine, out_dir = time.perf_counter(), common.machine(), out_folder(args, STEM)
    paths, archives = cached_archives(Path(args.cache) if args.cache else default_cache(), args.tiny, args.glyphs)
    scratch = Path(tempfile.mkdtemp(prefix="dnn_tf_full_scale_"))
    codes = {"ours": (common.REPO, [])}  # label -> (checkout, settings)
    codes |= {"baseline": (Path(args.compare_with).resolve(), [])} if args.compare_with else {}
    codes |= {label: (common.REPO, [setting]) for label, setting in VARIANTS.items()} if args.variants else {}
    runs: dict[str, list[dict]] = {c: [] for c in codes}
    try:
        for r in range(rounds):
            common.log(f"round {r + 1}/{rounds}")
            for label, (code, settings) in codes.items():
                out = scratch / f"{list(codes).index(label)}-out"
                shutil.rmtree(out, ignore_errors=True)
                runs[label].append(prepare_round(paths, code, settings, out, args.tiny))
        identities = {label: identical(scratch / "0-out", scratch / f"{i}-out")
                      for i, label in enumerate(codes) if label != "ours"}
        for i in range(len(codes)):
            shutil.rmtree(scratch / f"{i}-out", ignore_errors=True)
        contenders = {c: summary(rs) for c, rs in runs.items()}
        if not args.no_course:
            contenders["course"] = course_baseline(paths, scratch, args.course_again)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ours = contenders["ours"]
    result = {"benchmark": STEM, "command": command(args), "machine": machine, "machine_end": common.machine(),
              "tiny": bool(args.tiny),
              "rounds": rounds, "archives": archives, "contenders": contenders, "runs": runs,
              "compare_with": checkout_name(args.compare_with) if args.compare_with else None,
              "identity": identities.get("baseline"), "identities": identities,
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
    lines += [common.ratio_line(f"full_scale_{attr}_off/ours_seconds", contenders[label]["seconds"] / ours["seconds"])
              for label, (_, attr, _) in VARIANTS.items() if label in contenders]
    if identities:
        same = all(i["identical"] for i in identities.values())
        lines.append(f"full_scale identical_arrays={'yes' if same else 'NO'}")
    result["key_lines"] = lines
    return common.publish(out_dir, STEM, result, render(result), notes=[f"archives: {archives['glyphs']}"])


def cli(argv=None) -> int:
    return common.cli(main, argv, PROG)


if __name__ == "__main__":
    sys.exit(cli())
