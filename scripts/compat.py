#!/usr/bin/env python3
"""The test suite on the Pythons and library versions users have, not only CI's (``make compat``).

    python scripts/compat.py [SETUP ...] [--refresh] [--python 3.10=PATH] [--pytest-args "-x -k model"]
    python scripts/compat.py --render     # only rewrite docs/compat.md from docs/compat.json

CI tests one Python with the newest packages; users also have Python 3.10 with the oldest versions
``setup.cfg`` allows, and the newest Pythons. For each setup (all of them without arguments):

* ``py310-oldest``: Python 3.10, ``pip install -e .[dev]`` constrained by ``scripts/compat-oldest.txt``
  (each direct dependency at the lower bound setup.cfg declares, TensorFlow's own at what it pins);
* ``py312-newest``, ``py313-newest``: Python 3.12 and 3.13 with the newest releases;

creates a venv in ``.compat/<setup>/`` (reused while the interpreter, setup.cfg, pyproject.toml and
the constraints are unchanged; ``--refresh`` rebuilds it, e.g. to pick up new releases), records
the installed versions, runs ``python -m pytest -q`` with a JUnit report, and writes every setup's
result to ``docs/compat.md`` and ``docs/compat.json`` (the setups not run keep their last result).
A setup that cannot be installed is recorded as such. Stdlib only: runs on any Python 3.10+.
Exit status 1 if any setup failed to install or had a failing test.
"""

from __future__ import annotations

import argparse
import configparser
import datetime
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPAT_DIR = ROOT / ".compat"
DOC = ROOT / "docs" / "compat.md"
OLDEST = "scripts/compat-oldest.txt"
SETUPS = {  # name -> (Python version, constraints file or None)
    "py310-oldest": ("3.10", OLDEST),
    "py312-newest": ("3.12", None),
    "py313-newest": ("3.13", None),
}
KEY_PACKAGES = ("tensorflow", "keras", "numpy", "scipy", "matplotlib", "pillow", "tensorboard", "tqdm", "pytest")
# Never build these from source (a pin without a wheel for that Python is an install failure, not an hour of gcc).
PIP_ARGS = ("--only-binary", "tensorflow,numpy,scipy,matplotlib,pillow,h5py,ml-dtypes,grpcio")
TAIL = 25  # lines of a failed install's output kept in the report


def find_python(version: str, overrides: dict[str, str]) -> str | None:
    """An interpreter of ``version`` ("3.10"): --python, then pythonX.Y on PATH, then pyenv's versions."""
    candidates = [overrides[version]] if version in overrides else []
    candidates.append(shutil.which(f"python{version}") or "")
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"), reverse=True)
    for exe in filter(None, candidates):
        try:  # a pyenv shim exists but fails when that version is not selected
            out = subprocess.run([exe, "-c", "import platform; print(platform.python_version())"],
                                 capture_output=True, text=True, timeout=60)
        except OSError:
            continue
        if out.stdout.strip().startswith(version + "."):
            return exe
    return None


def run(cmd: list[str], log: Path, env: dict | None = None) -> int:
    """Runs ``cmd`` in the repo root, appending its output to ``log``; returns the exit code."""
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        return subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env).returncode


def tail(log: Path) -> str:
    """The last lines of a log, less pip's notes on this machine's package indexes."""
    lines = [line for line in log.read_text(errors="replace").splitlines()
             if not line.startswith(("WARNING: Location ", "Looking in indexes: ", "Looking in links: "))]
    return "\n".join(lines[-TAIL:])


def fingerprint(python: str, constraints: str | None) -> str:
    """What the venv's contents depend on: interpreter version, project metadata, constraints, pip options."""
    h = hashlib.sha256(subprocess.run([python, "-VV"], capture_output=True, text=True).stdout.encode())
    for name in ("setup.cfg", "pyproject.toml", constraints):
        if name:  # comments do not change what is installed
            h.update("".join(re.sub(r"#.*", "", line) for line in (ROOT / name).open()).encode())
    h.update(" ".join(PIP_ARGS).encode())
    return h.hexdigest()


def install(name: str, python: str, constraints: str | None, refresh: bool) -> tuple[Path | None, str, float]:
    """The setup's venv, created or reused: ``(venv python or None, what happened, seconds)``."""
    venv, start = COMPAT_DIR / name, time.monotonic()
    vpython, stamp, log = venv / "bin" / "python", venv / "inputs.sha256", COMPAT_DIR / f"{name}.install.log"
    key = fingerprint(python, constraints)
    if not refresh and vpython.exists() and stamp.exists() and stamp.read_text() == key:
        return vpython, "reused", 0.0
    print(f"[{name}] installing into .compat/{name}/ (log: .compat/{name}.install.log)", flush=True)
    log.write_text("")
    pip = [str(vpython), "-m", "pip", "install", "--disable-pip-version-check"]
    steps = [[python, "-m", "venv", "--clear", str(venv)], pip + ["-q", "--upgrade", "pip"],
             pip + ["-e", ".[dev]", *PIP_ARGS] + (["-c", constraints] if constraints else [])]
    for cmd in steps:
        if run(cmd, log) != 0:
            return None, "install failed:\n" + tail(log), time.monotonic() - start
    stamp.write_text(key)
    return vpython, "installed", time.monotonic() - start


def versions(vpython: Path) -> dict[str, str | None]:
    """Installed version of every distribution in the venv (None for a key package that is absent)."""
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name'].lower().replace('_', '-'): d.version for d in m.distributions()}))")
    found = json.loads(subprocess.run([str(vpython), "-c", code], capture_output=True, text=True, check=True).stdout)
    found.pop("dnn-tf", None)
    return {**{k: None for k in KEY_PACKAGES}, **dict(sorted(found.items()))}


def node_id(case: ET.Element) -> str:
    """pytest's id of a JUnit (xunit1) test case: tests/test_x.py::Class::test_y[param]."""
    file, cls = case.get("file", ""), case.get("classname", "")
    module = file[:-3].replace("/", ".") if file.endswith(".py") else ""
    inner = cls[len(module) + 1:] if module and cls.startswith(module + ".") else ("" if module == cls else cls)
    return "::".join(filter(None, [file or cls, inner, case.get("name", "")]))


def run_tests(name: str, vpython: Path, pytest_args: list[str]) -> dict:
    """``python -m pytest -q`` in the venv: counts, failing tests with their first message line, seconds."""
    junit, log = COMPAT_DIR / f"{name}.junit.xml", COMPAT_DIR / f"{name}.pytest.log"
    junit.unlink(missing_ok=True)
    venv_bin = str(vpython.parent)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    env.update(VIRTUAL_ENV=str(vpython.parents[1]), PATH=venv_bin + os.pathsep + env.get("PATH", ""),
               HYPOTHESIS_STORAGE_DIRECTORY=str(COMPAT_DIR / name / "hypothesis"))
    basetemp = tempfile.mkdtemp(prefix=f"dnn_tf-compat-{name}-")
    cmd = [str(vpython), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={basetemp}",
           f"--junitxml={junit}", "-o", "junit_family=xunit1", *pytest_args]
    print(f"[{name}] python -m pytest -q (log: .compat/{name}.pytest.log)", flush=True)
    log.write_text("")
    start = time.monotonic()
    try:
        code = run(cmd, log, env)
    finally:
        shutil.rmtree(basetemp, ignore_errors=True)
    seconds = time.monotonic() - start
    result = {"exit_code": code, "test_seconds": round(seconds, 1)}
    if not junit.exists():
        return {**result, "status": "pytest did not run", "detail": tail(log)}
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failures = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        bad = case.find("failure")
        bad = bad if bad is not None else case.find("error")
        if bad is not None:
            counts["failed" if bad.tag == "failure" else "errors"] += 1
            lines = [line.strip() for line in (bad.get("message") or bad.text or "").splitlines() if line.strip()]
            failures.append({"test": node_id(case), "kind": bad.tag, "message": " ".join(lines[:3])[:300]})
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    status = "passed" if code == 0 else "failed"
    return {**result, "status": status, **counts, "failures": failures}


def constraints_drift(constraints: str) -> list[str]:
    """Lower bounds of setup.cfg's install_requires that the constraints file does not pin exactly."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / constraints).read_text(), re.M))
    pins = {k.lower(): v for k, v in pins.items()}
    drift = []
    for req in filter(None, (r.strip() for r in cfg["options"]["install_requires"].splitlines())):
        m = re.match(r"([A-Za-z0-9_.-]+)\s*(?:>=\s*([^,\s;]+))?", req)
        name, low = m.group(1).lower(), m.group(2)
        if low is None:
            drift.append(f"{name}: no lower bound in setup.cfg")
        elif not pins.get(name, "").startswith(low):
            drift.append(f"{name}: setup.cfg >={low}, constraints =={pins.get(name, '(none)')}")
    return drift


def test_setup(name: str, overrides: dict[str, str], refresh: bool, pytest_args: list[str]) -> dict:
    version, constraints = SETUPS[name]
    result = {"setup": name, "constraints": constraints, "date": datetime.date.today().isoformat(), **git_state()}
    if constraints:
        result["constraints_drift"] = constraints_drift(constraints)
        for line in result["constraints_drift"]:
            print(f"[{name}] warning: {line}", flush=True)
    python = find_python(version, overrides)
    if python is None:
        return {**result, "python": version, "status": f"no Python {version} found (--python {version}=PATH)"}
    result["python"] = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                                      capture_output=True, text=True).stdout.strip()
    vpython, how, seconds = install(name, python, constraints, refresh)
    result.update(install=how.splitlines()[0], install_seconds=round(seconds, 1))
    if vpython is None:
        return {**result, "status": "install failed", "detail": scrub(how)}
    result["versions"] = versions(vpython)
    result.update(run_tests(name, vpython, pytest_args))
    if "detail" in result:
        result["detail"] = scrub(result["detail"])
    for failure in result.get("failures", []):
        failure["message"] = scrub(failure["message"])
    return result


def git_state() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"commit": git("rev-parse", "--short", "HEAD"), "local_changes": bool(git("status", "--porcelain"))}


def scrub(text: str) -> str:
    """No colours, no machine paths in committed files: the checkout is ``.``, home ``~``, temp folders ``$TMP``."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text).replace(str(ROOT), ".").replace(str(Path.home()), "~")
    return re.sub(re.escape(tempfile.gettempdir()) + r"/[^\s'\"]*", "$TMP/...", text)


def write_atomic(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=path.name + ".", suffix=".tmp", delete=False) as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(f.name, 0o666 & ~umask)  # a committed file, not a private temp file
    os.replace(f.name, path)


def render(results: dict[str, dict]) -> str:
    """docs/compat.md: one column per setup, then each setup's failing tests."""
    rows = results.values()
    out = ["# Compatibility", "",
           "Written by `make compat` (`scripts/compat.py`), not by hand; `docs/compat.json` has the same and every",
           "installed version. `py310-oldest` installs with `scripts/compat-oldest.txt` (the lower bounds of",
           "setup.cfg); the `newest` setups take the newest releases on the day of the run. Not part of CI.", "",
           "| | " + " | ".join(f"`{r['setup']}`" for r in rows) + " |", "|:---|" + "---:|" * len(results)]

    def row(label: str, cell) -> None:
        out.append(f"| {label} | " + " | ".join(str(cell(r)) for r in rows) + " |")

    row("date, commit", lambda r: f"{r['date']}, {r['commit']}" + " + local changes" * r["local_changes"])
    row("Python", lambda r: r.get("python", "?"))
    for pkg in KEY_PACKAGES:
        row(pkg, lambda r, p=pkg: (r.get("versions") or {}).get(p) or "—")
    row("result", lambda r: f"**{r['status']}**")
    for key in ("passed", "failed", "errors", "skipped"):
        row(key, lambda r, k=key: r.get(k, "—"))
    row("test time", lambda r: f"{r['test_seconds'] / 60:.1f} min" if "test_seconds" in r else "—")
    row("install", lambda r: f"{r.get('install', '—')} ({r.get('install_seconds', 0) / 60:.1f} min)")
    for r in rows:
        if r.get("failures") or r.get("detail") or r.get("constraints_drift"):
            out += ["", f"## {r['setup']}", ""]
            out += [f"* constraints out of step with setup.cfg: {d}" for d in r.get("constraints_drift", [])]
            out += [f"* `{f['test']}` ({f['kind']}): {scrub(f['message'])}" for f in r.get("failures", [])]
            if r.get("detail"):
                out += ["", "```", scrub(r["detail"]), "```"]
    return "\n".join(out) + "\n"


def save(name: str | None, result: dict | None) -> None:
    """Merges one setup's result into docs/compat.json (the others keep theirs) and rewrites docs/compat.md."""
    with open(COMPAT_DIR / ".lock", "w") as lock:  # parallel `make compat SETUPS=...` runs merge, not clobber
        fcntl.flock(lock, fcntl.LOCK_EX)
        json_path = DOC.with_suffix(".json")
        results = json.loads(json_path.read_text()) if json_path.exists() else {}
        if name is not None:
            results[name] = result
        results = {s: results[s] for s in SETUPS if s in results}
        write_atomic(json_path, json.dumps(results, indent=1) + "\n")
        write_atomic(DOC, render(results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("setups", nargs="*", metavar="SETUP", help=f"any of {', '.join(SETUPS)} (default: all)")
    parser.add_argument("--refresh", action="store_true", help="rebuild the venvs even if their inputs are unchanged")
    parser.add_argument("--python", action="append", default=[], metavar="X.Y=PATH", help="the interpreter for X.Y")
    parser.add_argument("--pytest-args", default="", help="extra pytest arguments, one string")
    parser.add_argument("--render", action="store_true", help="only rewrite docs/compat.md from docs/compat.json")
    args = parser.parse_args(argv)
    unknown = [s for s in args.setups if s not in SETUPS]
    if unknown or any("=" not in p for p in args.python):
        parser.error(f"unknown setup {', '.join(unknown)}" if unknown else "--python takes X.Y=PATH")
    overrides = dict(p.split("=", 1) for p in args.python)
    COMPAT_DIR.mkdir(exist_ok=True)
    ok = True
    for name in [] if args.render else args.setups or list(SETUPS):
        result = test_setup(name, overrides, args.refresh, args.pytest_args.split())
        ok = ok and result["status"] == "passed"
        print(f"[{name}] {result['status']}: " + ", ".join(f"{result[k]} {k}" for k in
              ("passed", "failed", "errors", "skipped") if k in result), flush=True)
        save(name, result)
    if args.render:
        save(None, None)
    print(f"wrote {DOC.relative_to(ROOT)} and {DOC.with_suffix('.json').relative_to(ROOT)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
