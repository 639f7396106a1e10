"""Tests for dnn_tf.data.download: all traffic goes to a local server or file:// URLs, never the internet."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import random
import socket
import types
import urllib.error
import urllib.parse
import urllib.request

import pytest
from httpserver import Behaviour, LocalServer

from dnn_tf import files
from dnn_tf.data import download
from dnn_tf.data.download import DownloadError, fetch, resolve_sources, sha256_file

DATA = random.Random(0).randbytes(300_000)
NAME = "notMNIST_tiny.tar.gz"
CUT = 100_000
QUICK = dict(progress=False, backoff=0.0, timeout=5.0)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Small chunks (several per file), no proxies, and any non-local URL fails the test."""
    monkeypatch.setattr(download, "CHUNK_SIZE", 16 * 1024)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    real_urlopen = urllib.request.urlopen

    def local_only(request, *args, **kwargs):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        parts = urllib.parse.urlsplit(url)
        assert parts.scheme == "file" or parts.hostname == "127.0.0.1", f"test tried to reach {url}"
        return real_urlopen(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", local_only)


@pytest.fixture
def server():
    with LocalServer({f"/files/{NAME}": DATA, "/books/notMNIST_small.tar.gz": DATA}) as s:
        yield s


def read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_full_download_verifies_size_and_renames(server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dnn_tf")
    path = fetch(server.url(f"/files/{NAME}"), tmp_path / "dl", expected_size=len(DATA), **QUICK)
    assert path == os.path.join(tmp_path / "dl", NAME)
    assert read(path) == DATA
    assert not os.path.exists(path + ".part")
    assert server.range_headers() == [None]
    assert server.requests[0].headers["User-Agent"].startswith("dnn_tf/")
    assert any("saved" in m for m in caplog.messages)


def test_existing_complete_file_is_reused_without_request(server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dnn_tf")
    (tmp_path / NAME).write_bytes(DATA)
    digest = hashlib.sha256(DATA).hexdigest()
    path = fetch(server.url(f"/files/{NAME}"), tmp_path, len(DATA), sha256=digest, **QUICK)
    assert path == str(tmp_path / NAME)
    assert server.requests == []
    assert "using existing" in caplog.messages[0]


def test_existing_file_of_wrong_size_is_downloaded_again(server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dnn_tf")
    (tmp_path / NAME).write_bytes(DATA[:10])
    path = fetch(server.url(f"/files/{NAME}"), tmp_path, len(DATA), **QUICK)
    assert read(path) == DATA
    assert f"10 bytes, expected {len(DATA)}" in caplog.messages[0]
    assert server.range_headers() == [None]


def test_resume_from_part_sends_range_and_appends(server, tmp_path):
    (tmp_path / (NAME + ".part")).write_bytes(DATA[:12_345])
    path = fetch(server.url(f"/files/{NAME}"), tmp_path, len(DATA), **QUICK)
    assert read(path) == DATA
    assert server.range_headers() == ["bytes=12345-"]
    assert server.requests[0].status == 206


def test_dropped_connection_is_resumed_within_the_call(server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dnn_tf")
    server.behaviour.cut_after, server.behaviour.cut_requests = CUT, 2
    path = fetch(server.url(f"/files/{NAME}"), tmp_path, len(DATA), max_retries=3, **QUICK)
    assert read(path) == DATA
    assert server.range_headers() == [None, f"bytes={CUT}-", f"bytes={2 * CUT}-"]
    assert sum("retry" in m for m in caplog.messages) == 2


def test_dropped_connection_is_resumed_by_the_next_call(server, tmp_path):
    server.behaviour.cut_after, server.behaviour.cut_requests = CUT, 1
    url = server.url(f"/files/{NAME}")
    with pytest.raises(DownloadError, match="run again to resume"):
        fetch(url, tmp_path, len(DATA), max_retries=0, **QUICK)
    assert not (tmp_path / NAME).exists()
    assert read(tmp_path / (NAME + ".part")) == DATA[:CUT]
    path = fetch(url, tmp_path, len(DATA), max_retries=0, **QUICK)
    assert read(path) == DATA
    assert server.range_headers() == [None, f"bytes={CUT}-"]


def test_retries_are_bounded(tmp_path):
    # every attempt starts over (Range ignored) and is cut again
    with LocalServer({f"/{NAME}": DATA}, Behaviour(honor_range=False, cut_after=CUT, cut_requests=100)) as server:
        with pytest.raises(DownloadError, match="after 3 attempts"):
            fetch(server.url(NAME), tmp_path, len(DATA), max_retries=2, **QUICK)
    assert len(server.requests) == 3
    assert not (tmp_path / NAME).exists()
    assert read(tmp_path / (NAME + ".part")) == DATA[:CUT]


def test_timeout_counts_as_dropped_connection(server, tmp_path):
    server.behaviour.cut_after, server.behaviour.cut_requests, server.behaviour.stall_seconds = CUT, 1, 3.0
    opts = dict(QUICK, timeout=0.3)
    path = fetch(server.url(f"/files/{NAME}"), tmp_path, len(DATA), max_retries=1, **opts)
    assert read(path) == DATA
    first, second = server.range_headers()
    assert first is None
    # bytes of the chunk being read when the timeout hit are dropped: .part stays a clean prefix
    assert CUT - download.CHUNK_SIZE < int(second[len("bytes=") : -1]) <= CUT


def test_server_ignoring_range_restarts_from_zero(server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dnn_tf")
    server.behaviour.honor_range = False
    (tmp_path / (NAME + ".part")).write_bytes(b"garbage that must not survive")
    path = fetch(server.url(f"/files/{NAME}"), tmp_path, len(DATA), **QUICK)
    assert read(path) == DATA
    assert server.range_headers() == ["bytes=29-"]
    assert server.requests[0].status == 200
    assert any("does not resume" in m for m in caplog.messages)


def test_complete_part_is_finished_without_body(server, tmp_path):
    (tmp_path / (NAME + ".part")).write_bytes(DATA)
    path = fetch(server.url(f"/files/{NAME}"), tmp_path, None, **QUICK)  # size unknown: asks the server
    assert read(path) == DATA
    assert [r.status for r in server.requests] == [416]


def test_oversized_part_is_discarded(server, tmp_path):
    (tmp_path / (NAME + ".part")).write_bytes(DATA + b"extra")
    path = fetch(server.url(f"/files/{NAME}"), tmp_path, None, **QUICK)
    assert read(path) == DATA
    assert [r.status for r in server.requests] == [416, 200]


def test_wrong_expected_size_fails_without_final_file(server, tmp_path):
    with pytest.raises(DownloadError, match=f"{len(DATA)} bytes but {len(DATA) + 1} were expected"):
        fetch(server.url(f"/files/{NAME}"), tmp_path, len(DATA) + 1, **QUICK)
    assert not (tmp_path / NAME).exists()
    assert not (tmp_path / (NAME + ".part")).exists()  # empty .part is cleaned up


def test_server_announcing_too_few_bytes_fails(server, tmp_path):
    server.behaviour.length_delta = -1000  # Content-Length says 1000 bytes fewer
    with pytest.raises(DownloadError, match="expected"):
        fetch(server.url(f"/files/{NAME}"), tmp_path, len(DATA), **QUICK)
    assert not (tmp_path / NAME).exists()


def test_server_announcing_too_many_bytes_is_a_short_read(server, tmp_path):
    server.behaviour.length_delta = 1000  # promises 1000 bytes it never sends
    with pytest.raises(DownloadError, match=f"connection closed at byte {len(DATA)} of {len(DATA) + 1000}"):
        fetch(server.url(f"/files/{NAME}"), tmp_path, None, max_retries=0, **QUICK)
    assert not (tmp_path / NAME).exists()
    assert read(tmp_path / (NAME + ".part")) == DATA


def test_body_longer_than_expected_without_length_is_discarded(server, tmp_path):
    server.behaviour.send_length = False
    with pytest.raises(DownloadError, match=f"more than {len(DATA) - 1} bytes"):
        fetch(server.url(f"/files/{NAME}"), tmp_path, len(DATA) - 1, **QUICK)
    assert not (tmp_path / NAME).exists()
    assert not (tmp_path / (NAME + ".part")).exists()


def test_unknown_length_download(server, tmp_path):
    server.behaviour.send_length = False
    path = fetch(server.url(f"/files/{NAME}"), tmp_path, len(DATA), **QUICK)
    assert read(path) == DATA


def test_sha256_mismatch_fails_and_match_passes(server, tmp_path):
    url = server.url(f"/files/{NAME}")
    with pytest.raises(DownloadError, match="SHA-256"):
        fetch(url, tmp_path, len(DATA), sha256="0" * 64, **QUICK)
    assert not (tmp_path / NAME).exists()
    assert not (tmp_path / (NAME + ".part")).exists()
    digest = hashlib.sha256(DATA).hexdigest()
    assert read(fetch(url, tmp_path, len(DATA), sha256=digest.upper(), **QUICK)) == DATA


def test_disk_full_fails_cleanly(server, tmp_path, monkeypatch):
    calls = []
    real_write = download._write_chunk

    def write_then_fail(f, chunk, part):
        calls.append(len(chunk))
        if len(calls) > 2:
            raise download._disk_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), part)
        real_write(f, chunk, part)

    monkeypatch.setattr(download, "_write_chunk", write_then_fail)
    with pytest.raises(DownloadError, match="disk full") as info:
        fetch(server.url(f"/files/{NAME}"), tmp_path, len(DATA), max_retries=3, **QUICK)
    assert info.value.errno == errno.ENOSPC
    assert len(server.requests) == 1  # not retried
    assert not (tmp_path / NAME).exists()
    part = read(tmp_path / (NAME + ".part"))
    assert part == DATA[: len(part)] and len(part) == 2 * 16 * 1024


def test_disk_full_from_the_file_object(server, tmp_path, monkeypatch):
    """The real _write_chunk turns an ENOSPC from f.write into DownloadError."""

    class FullFile:
        def write(self, chunk):
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DownloadError, match="disk full") as info:
        download._write_chunk(FullFile(), b"x", str(tmp_path / "a.part"))
    assert info.value.errno == errno.ENOSPC


def test_not_enough_free_space_fails_before_writing(server, tmp_path, monkeypatch):
    monkeypatch.setattr(download.shutil, "disk_usage", lambda path: types.SimpleNamespace(free=1000))
    with pytest.raises(DownloadError, match="not enough disk space"):
        fetch(server.url(f"/files/{NAME}"), tmp_path, len(DATA), **QUICK)
    assert not (tmp_path / NAME).exists()


def test_file_url(tmp_path):
    src = tmp_path / "src" / NAME
    src.parent.mkdir()
    src.write_bytes(DATA)
    path = fetch(src.as_uri(), tmp_path / "dl", len(DATA), **QUICK)
    assert read(path) == DATA
    assert path == os.path.join(tmp_path / "dl", NAME)
    with pytest.raises(DownloadError, match="no such file"):
        fetch((tmp_path / "missing.tar.gz").as_uri(), tmp_path / "dl", **QUICK)


def test_local_paths_are_returned_as_is(tmp_path):
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(b"abc")
    assert fetch(str(archive), tmp_path / "dl", **QUICK) == str(archive)
    assert fetch(str(tmp_path), tmp_path / "dl", **QUICK) == str(tmp_path)
    assert not (tmp_path / "dl").exists()


def test_missing_local_path(tmp_path):
    with pytest.raises(DownloadError, match="no such file or folder") as info:
        fetch(str(tmp_path / "nope.tar.gz"), tmp_path, **QUICK)
    assert info.value.errno == errno.ENOENT
    assert "\n" not in str(info.value)


def test_unsupported_scheme(tmp_path):
    with pytest.raises(DownloadError, match="unsupported URL scheme 'ftp'"):
        fetch("ftp://127.0.0.1/x.tar.gz", tmp_path, **QUICK)


def test_canonical_name_uses_base_url_and_expected_size(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = "notMNIST_small.tar.gz"
    base = server.url("/books/")
    with pytest.raises(DownloadError, match=f"{len(DATA)} bytes but 8458043 were expected"):
        fetch(name, tmp_path / "dl", base_url=base, **QUICK)  # the real EXPECTED_SIZES
    monkeypatch.setitem(download.EXPECTED_SIZES, name, len(DATA))
    path = fetch(name, tmp_path / "dl", base_url=base.rstrip("/"), **QUICK)
    assert read(path) == DATA
    assert {r.path for r in server.requests} == {f"/books/{name}"}
    n = len(server.requests)
    assert fetch(name, tmp_path / "dl", base_url=base, **QUICK) == path  # maybe_download: reused
    assert len(server.requests) == n


def test_http_errors(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(server.url("/files/absent.tar.gz"), tmp_path, max_retries=3, **QUICK)
    assert len(server.requests) == 1  # a 404 is not retried
    server.behaviour.fail_status, server.behaviour.fail_requests = 503, 3  # GET 1 was the 404
    path = fetch(server.url(f"/files/{NAME}"), tmp_path, len(DATA), max_retries=2, **QUICK)
    assert read(path) == DATA
    assert [r.status for r in server.requests[1:]] == [503, 503, 200]


def test_connection_refused_is_retried_then_fails(tmp_path):
    with LocalServer({}) as s:
        url = s.url(f"/files/{NAME}")
    with pytest.raises(DownloadError, match="after 2 attempts"):
        fetch(url, tmp_path, max_retries=1, **QUICK)


def test_second_process_is_locked_out(server, tmp_path):
    fcntl = pytest.importorskip("fcntl")
    with open(tmp_path / (NAME + ".part"), "ab") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        with pytest.raises(DownloadError, match="another process"):
            fetch(server.url(f"/files/{NAME}"), tmp_path, len(DATA), **QUICK)
    assert server.requests == []


def test_progress_bar_on_stderr(server, tmp_path, capsys):
    fetch(server.url(f"/files/{NAME}"), tmp_path, len(DATA), **dict(QUICK, progress=True))
    err = capsys.readouterr().err
    assert "\r" in err and "100%" in err and "300k/300k" in err and "B/s" in err and NAME in err
    assert err.endswith("\n")
    assert fetch(server.url(f"/files/{NAME}"), tmp_path, len(DATA), **QUICK)  # reused, and no bar without progress
    assert capsys.readouterr().err == ""


def test_progress_bar_of_a_resumed_download_starts_at_the_part(server, tmp_path, capsys):
    (tmp_path / (NAME + ".part")).write_bytes(DATA[:CUT])
    fetch(server.url(f"/files/{NAME}"), tmp_path, len(DATA), **dict(QUICK, progress=True))
    first = capsys.readouterr().err.split("\r")[1]
    assert "100k/300k" in first and "33%" in first, first


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="expected_size"):
        fetch("http://127.0.0.1/x", tmp_path, expected_size=-1)
    with pytest.raises(ValueError, match="max_retries"):
        fetch("http://127.0.0.1/x", tmp_path, max_retries=-1)


def test_sha256_file(tmp_path, monkeypatch):
    assert sha256_file is files.sha256_file  # the one implementation, re-exported
    monkeypatch.setattr(files, "HASH_BLOCK", 1000)  # many blocks
    (tmp_path / "f").write_bytes(DATA)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(DATA).hexdigest()


def test_parse_content_range():
    assert download._parse_content_range("bytes 10-99/100") == (10, 99, 100)
    assert download._parse_content_range("bytes */100") == (None, None, 100)
    assert download._parse_content_range("bytes 0-9/*") == (0, 9, None)
    assert download._parse_content_range(None) == (None, None, None)


def test_resolve_sources_defaults_urls_names_and_local_paths(tmp_path, monkeypatch):
    calls = []

    def fake_fetch(source, dest_dir, expected_size=None, sha256=None, progress=False, **kwargs):
        calls.append((source, dest_dir, expected_size, progress))
        return os.path.join(dest_dir, os.path.basename(source))

    monkeypatch.setattr(download, "fetch", fake_fetch)
    monkeypatch.chdir(tmp_path)
    out = str(tmp_path / "data")
    large, small = "notMNIST_large.tar.gz", "notMNIST_small.tar.gz"
    assert resolve_sources(None, None, out, progress=True) == (os.path.join(out, large), os.path.join(out, small))
    assert calls == [(large, out, 247336696, True), (small, out, 8458043, True)]

    calls.clear()
    local = tmp_path / "mine.tar.gz"
    local.write_bytes(b"x")
    assert resolve_sources(str(local), None, out) == (str(local), None)  # given alone: test is split from it
    assert resolve_sources(None, str(local), out) == (os.path.join(out, large), str(local))
    missing = str(tmp_path / "missing.tar.gz")
    assert resolve_sources(missing, missing, out) == (missing, missing)  # prepare names the role
    assert calls == [(large, out, 247336696, False)]

    calls.clear()
    url = "https://example.org/files/notMNIST_small.tar.gz"
    assert resolve_sources(str(local), url, out)[1] == os.path.join(out, small)
    assert resolve_sources("http://example.org/other.tar.gz", None, out)[0] == os.path.join(out, "other.tar.gz")
    assert calls == [(url, out, 8458043, False), ("http://example.org/other.tar.gz", out, None, False)]

    calls.clear()
    (tmp_path / small).write_bytes(b"a local copy")  # a canonical name that is here is a local path
    assert resolve_sources(small, None, out) == (small, None)
    assert calls == []


def test_resolve_sources_downloads_through_fetch(tmp_path):
    src = tmp_path / "src" / NAME
    src.parent.mkdir()
    src.write_bytes(DATA)
    train, test = resolve_sources(src.as_uri(), None, str(tmp_path / "dl"))
    assert train == os.path.join(tmp_path / "dl", NAME) and read(train) == DATA and test is None
    with pytest.raises(DownloadError, match="unsupported URL scheme 'ftp'"):
        resolve_sources("ftp://127.0.0.1/x.tar.gz", None, str(tmp_path))




def test_no_network_is_a_network_error_and_the_commands_say_how_to_run_offline(tmp_path, monkeypatch, capsys):
    from dnn_tf.cli import OFFLINE_HINT
    from dnn_tf.cli import prepare as prepare_cli
    from dnn_tf.cli import reproduce as reproduce_cli

    def no_dns(request, *args, **kwargs):  # what urlopen raises without a network: the name does not resolve
        raise urllib.error.URLError(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", no_dns)
    url = "https://example.org/notMNIST_small.tar.gz"
    with pytest.raises(download.NetworkError, match="Name or service not known"):
        fetch(url, tmp_path, **QUICK)
    for main, argv in ((prepare_cli.main, ["--out", str(tmp_path)]),  # the course's own archives by default
                       (reproduce_cli.main, ["--data-dir", str(tmp_path), "--train-archive", url])):
        assert main([*argv, "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.endswith(OFFLINE_HINT) and "Name or service not known" in err
        assert "--train-archive" in err and "DATA=" in err
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".gz", ".part")]

def test_refused_connection_is_a_network_error_a_server_error_is_not(server, tmp_path):
    with socket.socket() as s:  # a port nothing listens on: bind one, note it, close it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(download.NetworkError, match="cannot connect"):
        fetch(f"http://127.0.0.1:{port}/{NAME}", tmp_path, max_retries=1, **QUICK)
    server.behaviour.fail_status, server.behaviour.fail_requests = 404, 1
    with pytest.raises(DownloadError) as e:
        fetch(server.url(NAME), tmp_path, max_retries=0, **QUICK)
    assert not isinstance(e.value, download.NetworkError)
