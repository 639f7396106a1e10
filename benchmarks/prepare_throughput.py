"""Archive -> arrays throughput: dnn_tf.data.decode.read_images vs the course's extract-then-read loop.

Contenders (each run in a fresh subprocess, which reports its own time and
peak memory, VmHWM from /proc/self/status):

* ``ours w=1`` / ``ours w=2``: ``dnn_tf.data.decode.read_images(archive, workers)``,
  PNGs streamed from the tar and decoded in ``workers`` processes;
* ``course``: the course's approach, written here as the baseline:
  ``tarfile.extractall`` into a temporary folder, then per letter folder
  ``os.listdir`` and one file at a time ``PIL.Image.open`` + ``np.asarray``,
  normalized per image ``(x.astype(float) - 255 / 2) / 255`` into a float32
  array (``load_letter``; ``scipy.ndimage.imread`` is gone). Time includes
  the extraction.

Sources: the archive given with ``--glyphs`` (real glyphs, say notMNIST_small_dev) and a generated
archive of 100,000 PNGs (its images replicated, or fixture glyphs without ``--glyphs``; layout
``root/A..J/*.png``, shuffled member order; cached in the temp folder). Rounds are interleaved
(course, ours w=1, ours w=2, ...); times are medians. Also: the projected time for notMNIST_large
(529,114 images; prepare_full_scale measures it) and the time of ``dnn_tf.data.duplicates.find_overlaps``
on 200,000 + 10,000 + 10,000 images.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402

from dnn_tf.notmnist import IMAGE_SIZE, LETTERS, PIXEL_DEPTH  # noqa: E402

PROG = "prepare_throughput"
STEM = "prepare_throughput"
LARGE_IMAGES = 529_114  # notMNIST_large
SYNTH_ROOT = "notMNIST_bench"
SYNTH_COMPRESSLEVEL = 6
FIXTURE_PER_CLASS = 100  # glyphs per letter without --glyphs
CACHE_DIR = Path(tempfile.gettempdir()) / "dnn_tf_bench_cache"
TARGET_RATIO = 3.0
TARGET_LARGE_SECONDS = 90.0
TARGET_MEMORY_OVERHEAD = 0.30  # peak - import baseline - arrays <= 30% of the arrays
TARGET_DEDUP_SECONDS = 10.0
SEED = 0
# The course baseline takes 30-70 s on 100,000 PNGs (2 shared cores): two rounds of everything.
FULL = {"synthetic": 100_000, "dedup": (200_000, 10_000, 10_000), "planted": 500, "rounds_large": 2,
        "course_rounds_large": 2, "rounds_sample": 3}
TINY = {"synthetic": 3_000, "dedup": (20_000, 1_000, 1_000), "planted": 50, "rounds_large": 1,
        "course_rounds_large": 1, "rounds_sample": 1}
CONTENDERS = ("course", "ours w=1", "ours w=2")
DEDUP_ROUNDS = 2
IMPORT_PROBES = 3  # fresh interpreters measured for the import baseline


# --------------------------------------------------------------------------- the contenders (run in a child)


def course_load_letter(folder: str) -> np.ndarray:
    """The course's load_letter: every image of one letter folder, normalized one at a time."""
    from PIL import Image

    image_files = os.listdir(folder)
    dataset = np.ndarray(shape=(len(image_files), IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    num_images = 0
    for image in image_files:
        image_file = os.path.join(folder, image)
        try:
            with Image.open(image_file) as im:
                image_data = (np.asarray(im).astype(float) - PIXEL_DEPTH / 2) / PIXEL_DEPTH
            if image_data.shape != (IMAGE_SIZE, IMAGE_SIZE):
                raise OSError(f"Unexpected image shape: {image_data.shape}")
            dataset[num_images, :, :] = image_data
            num_images = num_images + 1
        except OSError:
            pass  # the course printed "Could not read ... it's ok, skipping."
    return dataset[0:num_images, :, :]


def course_read(archive: str, scratch: str) -> list[np.ndarray]:
    """The course's maybe_extract + load_letter for every A..J folder."""
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(scratch, filter="data")
        else:  # pragma: no cover - Python < 3.11.4
            tar.extractall(scratch)
    roots = [os.path.join(scratch, d) for d in sorted(os.listdir(scratch))]
    root = roots[0] if len(roots) == 1 and os.path.isdir(roots[0]) else scratch
    return [course_load_letter(os.path.join(root, letter)) for letter in LETTERS
            if os.path.isdir(os.path.join(root, letter))]


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def child(kind: str, archive: str | None = None, workers: int | None = None) -> None:
    """Runs one contender in this (fresh) process and prints one JSON line."""
    import resource

    out = {"kind": kind, "workers": workers}
    cpu0 = cpu_seconds()
    if kind == "import_archive":
        import dnn_tf.data.decode  # noqa: F401 - archive, png and Pillow
    elif kind == "ours":
        from dnn_tf.data.decode import read_images

        t0 = time.perf_counter()
        result = read_images(archive, workers=workers)
        out["seconds"], out["images"] = time.perf_counter() - t0, int(result.images.shape[0])
        out["array_bytes"] = int(result.images.nbytes + result.labels.nbytes)
    elif kind == "course":
        from PIL import Image  # noqa: F401

        scratch = tempfile.mkdtemp(prefix="course_extract_")
        try:
            t0 = time.perf_counter()
            letters = course_read(archive, scratch)
            out["seconds"] = time.perf_counter() - t0
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        out["images"], out["array_bytes"] = int(sum(len(a) for a in letters)), int(sum(a.nbytes for a in letters))
    elif kind == "dedup":
        from dnn_tf.data.duplicates import find_overlaps

        sizes = [int(s) for s in archive.split(",")]
        train, valid, test, planted = dedup_arrays(*sizes[:3], planted=sizes[3])
        t0 = time.perf_counter()
        counts, valid_keep, test_keep = find_overlaps(train, valid, test)
        out["seconds"], out["planted"] = time.perf_counter() - t0, planted
        out["found"] = {pair: counts["exact"]["across"][pair] for pair in ("train-valid", "train-test")}
        out["valid_dropped"], out["test_dropped"] = int((~valid_keep).sum()), int((~test_keep).sum())
    elif kind != "import":
        raise ValueError(f"unknown contender {kind!r}")
    out["cpu_seconds"] = cpu_seconds() - cpu0  # includes the imports above, a few tens of ms
    out.update(common.proc_status())
    out["children_maxrss"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * common.KIB
    print(json.dumps(out), flush=True)


def dedup_arrays(n_train: int, n_valid: int, n_test: int, planted: int):
    """Random-ish normalized images with ``planted`` exact copies of train images in valid and in test."""
    rng = np.random.default_rng(SEED)

    def images(n):
        # Smooth random blobs (not white noise): a few random 7x7 patterns upsampled to 28x28.
        low = rng.integers(0, 256, (n, 7, 7), dtype=np.uint8)
        noise = rng.integers(0, 8, (n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        up = np.repeat(np.repeat(low, 4, axis=1), 4, axis=2) // 2 + noise
        return ((up.astype(np.float32) - PIXEL_DEPTH / 2) / PIXEL_DEPTH).astype(np.float32)

    train, valid, test = images(n_train), images(n_valid), images(n_test)
    k = min(planted, n_valid, n_test)
    valid[:k] = train[rng.choice(n_train, k, replace=False)]
    test[:k] = train[rng.choice(n_train, k, replace=False)]
    return train, valid, test, k


# --------------------------------------------------------------------------- the generated archive


def source_pngs(tiny: bool, glyphs: str | None = None) -> tuple[list[tuple[int, bytes]], str]:
    """(label, PNG bytes) to replicate: the members of the archive ``glyphs``, else rendered fixture glyphs."""
    if glyphs:
        from dnn_tf.data.archive import open_source

        out = [(label, data) for name, label, data in open_source(glyphs)
               if label is not None and name.endswith(".png")]
        return out, f"replicated {len(out):,} images of {Path(glyphs).name}"
    sys.path.insert(0, str(common.REPO / "tests"))
    from fixtures import make_glyph_images  # noqa: E402
    from PIL import Image

    per_class = FIXTURE_PER_CLASS // (10 if tiny else 1)
    images, labels = make_glyph_images(per_class, seed=SEED)
    out = []
    for image, label in zip(images, labels):
        buf = io.BytesIO()
        Image.fromarray(image, mode="L").save(buf, format="PNG")
        out.append((int(label), buf.getvalue()))
    return out, f"replicated {len(out):,} rendered fixture glyphs (no --glyphs archive given)"


def build_archive(path: Path, n: int, pngs: list[tuple[int, bytes]], seed: int = SEED) -> None:
    """Writes a ``.tar.gz`` of ``n`` PNGs, ``root/<letter>/<i>.png``, members in shuffled order."""
    order, mtime = list(range(n)), int(time.time())
    random.Random(seed).shuffle(order)
    with common.dio.atomic_path(path) as tmp, tarfile.open(tmp, "w:gz", compresslevel=SYNTH_COMPRESSLEVEL) as tar:
        for letter in LETTERS:
            info = tarfile.TarInfo(f"{SYNTH_ROOT}/{letter}")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(info)
        for i in order:
            label, data = pngs[i % len(pngs)]
            info = tarfile.TarInfo(f"{SYNTH_ROOT}/{LETTERS[label]}/img{i:07d}.png")
            info.size, info.mode, info.mtime = len(data), 0o644, mtime
            tar.addfile(info, io.BytesIO(data))


def cached_archive(n: int, tiny: bool, glyphs: str | None = None) -> tuple[Path, str]:
    """The generated archive of ``n`` PNGs, built once and cached in the temp folder."""
    pngs, what = source_pngs(tiny, glyphs)
    digest = hashlib.sha256(b"".join(d for _, d in pngs[:1000])).hexdigest()[:12]
    path = CACHE_DIR / f"synthetic_{n}_{len(pngs)}_{digest}.tar.gz"
    if not path.exists():
        common.log(f"building {path} ({n:,} PNGs) ...")
        build_archive(path, n, pngs)
    return path, what


# --------------------------------------------------------------------------- measurement


def out_folder(args, stem: str = STEM) -> Path:
    """``--out``, except that a ``--tiny`` run never writes into results/ (the committed figures): a temp folder."""
    if not (args.tiny and Path(args.out).resolve() == common.DEFAULT_OUT.resolve()):
        return Path(args.out)
    out = Path(tempfile.mkdtemp(prefix=f"{stem}_tiny_"))
    common.log(f"--tiny: writing to {out}, not to {args.out}")
    return out


def run_child(kind: str, archive=None, workers=None) -> dict:
    return common.run_python(f"import prepare_throughput as P; P.child({kind!r}, {archive!r}, {workers!r})")


def compare(archive: Path, rounds: int, course_rounds: int | None = None) -> dict:
    """Interleaved rounds of the three contenders on ``archive`` (the slow course baseline in the first
    ``course_rounds`` rounds only, default all)."""
    runs: dict[str, list[dict]] = {c: [] for c in CONTENDERS}
    spec = {"course": ("course", None), "ours w=1": ("ours", 1), "ours w=2": ("ours", 2)}

    def contender(name):
        def run() -> float:
            kind, workers = spec[name]
            r = run_child(kind, str(archive), workers)
            runs[name].append(r)
            return r["seconds"]
        return run

    course_rounds = rounds if course_rounds is None else min(course_rounds, rounds)
    common.log(f"{archive.name}: {rounds} rounds of ours w=1, ours w=2 ({course_rounds} with the course)")
    times: dict[str, list[float]] = {c: [] for c in CONTENDERS}
    for r in range(rounds):
        names = CONTENDERS if r < course_rounds else CONTENDERS[1:]
        for name, ts in common.interleave({c: contender(c) for c in names}, 1, warmup=0).items():
            times[name] += ts
        common.log(f"  round {r + 1}/{rounds}: " + ", ".join(f"{c}={times[c][-1]:.2f}s" for c in names))
    out = {}
    for name in CONTENDERS:
        seconds = common.median(times[name])
        images = runs[name][-1]["images"]
        out[name] = {"seconds": seconds, "images": images, "images_per_s": images / seconds,
                     "cpu_seconds": common.median([r["cpu_seconds"] for r in runs[name]]),
                     "peak_rss": max(r["VmHWM"] for r in runs[name]),
                     "worker_peak_rss": max(r["children_maxrss"] for r in runs[name]),
                     "array_bytes": runs[name][-1]["array_bytes"], "all_seconds": times[name]}
    counts = {out[c]["images"] for c in CONTENDERS}
    if len(counts) != 1:
        raise RuntimeError(f"contenders read different numbers of images: {sorted(counts)}")
    return out


def summarize(name: str, res: dict, base_rss: int) -> dict:
    best = max(("ours w=1", "ours w=2"), key=lambda c: res[c]["images_per_s"])
    arrays = res[best]["array_bytes"]
    overhead = (res["ours w=2"]["peak_rss"] - base_rss - arrays) / arrays
    return {"source": name, "images": res[best]["images"], "contenders": res, "best": best,
            "ratio_vs_course": res[best]["images_per_s"] / res["course"]["images_per_s"],
            "ratio_w2_vs_course": res["ours w=2"]["images_per_s"] / res["course"]["images_per_s"],
            "cpu_ratio_w1_vs_course": res["course"]["cpu_seconds"] / res["ours w=1"]["cpu_seconds"],
            "array_bytes": arrays, "memory_overhead_w2": overhead,
            "memory_overhead_w1": (res["ours w=1"]["peak_rss"] - base_rss - arrays) / arrays,
            "memory_overhead_course": (res["course"]["peak_rss"] - base_rss - arrays) / arrays}


def render(result: dict) -> str:
    mib = common.MIB
    rows = []
    for s in result["sources"]:
        for c in CONTENDERS:
            r = s["contenders"][c]
            rows.append([s["source"], c, r["images"], r["seconds"], r["cpu_seconds"], r["images_per_s"],
                         r["images_per_s"] / s["contenders"]["course"]["images_per_s"], r["peak_rss"] / mib,
                         (r["peak_rss"] - result["import_rss"]) / mib, r["worker_peak_rss"] / mib])
    big = result["sources"][-1]
    d = result["dedup"]
    m = result["machine"]
    lines = [
        "# Archive -> arrays throughput",
        "",
        f"Machine: {m['cpus']} CPUs, load average {m['load_average_1min']:.2f} at start, "
        f"{result['machine_end']['load_average_1min']:.2f} at the end (shared with other processes). Each contender "
        "runs in a fresh subprocess; rounds interleave the contenders; times are medians "
        f"({result['rounds']}). Generated archive: {result['synthetic_what']}, shuffled member order.",
        "",
        "`course` = `tarfile.extractall` to a temp folder + `PIL.Image.open`/`np.asarray` per file, normalized per "
        "image (the course's `load_letter`), time includes the extraction. `ours w=N` = "
        "`dnn_tf.data.decode.read_images(archive, workers=N)` (streamed from the tar, nothing extracted).",
        "",
        common.markdown_table(["source", "contender", "images", "seconds", "CPU s", "images/s", "x course",
                               "peak RSS MiB", "above import MiB", "worker peak MiB"], rows),
        "",
        "`CPU s` = user + system time of the contender's process and its workers (less sensitive to other "
        "processes than wall time): the single-process contenders' CPU-time ratio, course / ours w=1, is "
        + ", ".join(f"{s['cpu_ratio_w1_vs_course']:.2f}x ({s['source']})" for s in result["sources"]) + ".",
        "",
        f"Import baseline (fresh python + numpy): {result['numpy_rss'] / mib:.0f} MiB; "
        f"+ Pillow + dnn_tf.data.decode: {result['import_rss'] / mib:.0f} MiB (used as the baseline above).",
        "",
        "## Targets",
        "",
        common.markdown_table(["what", "measured", "target", "met"], [
            [f"speed-up over the course ({big['source']}, best of ours)", f"{big['ratio_vs_course']:.2f}x",
             f">= {TARGET_RATIO:.0f}x", "yes" if big["ratio_vs_course"] >= TARGET_RATIO else "no"],
            ["projected notMNIST_large (529,114 images), 2 workers", f"{result['large_seconds']:.0f} s",
             f"< {TARGET_LARGE_SECONDS:.0f} s", "yes" if result["large_seconds"] < TARGET_LARGE_SECONDS else "no"],
            ["peak memory above import baseline, beyond the arrays (ours w=2)",
             f"{100 * big['memory_overhead_w2']:.0f}% of {big['array_bytes'] / mib:.0f} MiB",
             f"< {100 * TARGET_MEMORY_OVERHEAD:.0f}%",
             "yes" if big["memory_overhead_w2"] < TARGET_MEMORY_OVERHEAD else "no"],
            [f"find_overlaps on {d['sizes'][0]:,} + {d['sizes'][1]:,} + {d['sizes'][2]:,} images",
             f"{d['seconds']:.1f} s", f"< {TARGET_DEDUP_SECONDS:.0f} s",
             "yes" if d["seconds"] < TARGET_DEDUP_SECONDS else "no"],
        ]),
        "",
        f"Memory beyond the arrays: ours w=1 {100 * big['memory_overhead_w1']:.0f}%, ours w=2 "
        f"{100 * big['memory_overhead_w2']:.0f}%, course {100 * big['memory_overhead_course']:.0f}% (peak RSS of the "
        "process holding the arrays, minus the import baseline, minus the arrays, over the arrays). The worker "
        "processes of w=2 are separate (their peak is in the last column).",
        "",
        f"Duplicate detection (`dnn_tf.data.duplicates.find_overlaps`): {d['seconds']:.2f} s "
        f"(median of {len(d['all_seconds'])}), planted {d['planted']} exact copies of train images in valid and "
        f"in test, found {d['found']['train-valid']} / {d['found']['train-test']}; "
        f"peak RSS {d['peak_rss'] / mib:.0f} MiB.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = common.parser(PROG, __doc__.splitlines()[0])
    common.add_glyphs_flag(p)
    args = p.parse_args(argv)
    sizes = TINY if args.tiny else FULL
    repeats = common.repeats_of(args)
    start = time.perf_counter()
    machine = common.machine()
    probes = 1 if args.tiny else IMPORT_PROBES
    numpy_rss = common.median([run_child("import")["VmHWM"] for _ in range(probes)])
    import_rss = common.median([run_child("import_archive")["VmHWM"] for _ in range(probes)])
    synthetic, what = cached_archive(sizes["synthetic"], args.tiny, args.glyphs)
    sources = []
    rounds_sample = min(repeats, sizes["rounds_sample"]) if args.repeats is None else repeats
    if args.glyphs and not args.tiny:
        sources.append(summarize(Path(args.glyphs).name, compare(Path(args.glyphs), rounds_sample), int(import_rss)))
    elif not args.tiny:
        common.log("no --glyphs archive: measuring the generated archive only")
    rounds_large = min(repeats, sizes["rounds_large"]) if args.repeats is None else repeats
    sources.append(summarize(f"generated {sizes['synthetic']:,} PNGs",
                             compare(synthetic, rounds_large, sizes["course_rounds_large"]), int(import_rss)))
    big = sources[-1]
    large_seconds = LARGE_IMAGES / big["contenders"]["ours w=2"]["images_per_s"]
    n_train, n_valid, n_test = sizes["dedup"]
    dedup_runs = [run_child("dedup", f"{n_train},{n_valid},{n_test},{sizes['planted']}")
                  for _ in range(min(rounds_large, DEDUP_ROUNDS))]
    dedup = {"sizes": sizes["dedup"], "seconds": common.median([r["seconds"] for r in dedup_runs]),
             "all_seconds": [r["seconds"] for r in dedup_runs], "planted": dedup_runs[0]["planted"],
             "found": dedup_runs[0]["found"], "peak_rss": max(r["VmHWM"] for r in dedup_runs)}
    result = {"benchmark": STEM, "machine": machine, "machine_end": common.machine(), "tiny": bool(args.tiny),
              "rounds": (f"{rounds_sample} rounds on the --glyphs archive, " if len(sources) > 1 else "")
              + f"{rounds_large} on the generated archive ({sizes['course_rounds_large']} of the course baseline)",
              "numpy_rss": numpy_rss, "import_rss": import_rss, "synthetic_what": what,
              "synthetic_archive": synthetic.name, "sources": sources, "large_images": LARGE_IMAGES,
              "large_seconds": large_seconds, "dedup": dedup,
              "targets": {"ratio": TARGET_RATIO, "large_seconds": TARGET_LARGE_SECONDS,
                          "memory_overhead": TARGET_MEMORY_OVERHEAD, "dedup_seconds": TARGET_DEDUP_SECONDS},
              "seconds": time.perf_counter() - start}
    result["key_lines"] = [
        f"prepare {big['source']}: ours {big['contenders'][big['best']]['images_per_s']:,.0f} images/s "
        f"({big['best']}), course {big['contenders']['course']['images_per_s']:,.0f} images/s",
        f"projected notMNIST_large: {large_seconds:.0f} s; peak memory above the arrays: "
        f"{100 * big['memory_overhead_w2']:.0f}%; dedup {dedup['seconds']:.1f} s",
        common.ratio_line("prepare_ours/course", big["ratio_vs_course"]),
    ]
    markdown = render(result)
    return common.publish(out_folder(args), STEM, result, markdown)


def cli(argv=None) -> int:
    return common.cli(main, argv, PROG)


if __name__ == "__main__":
    sys.exit(cli())
