"""Fetches the notMNIST archives: the course's ``maybe_download``, made resumable and verified.

``resolve_sources`` picks the train and test sources (by default the course's two archives);
``fetch`` turns a source (local path, URL, or a bare canonical name such as
``"notMNIST_small.tar.gz"``) into a local file path. Downloads go to ``dest_dir/<name>.part``;
a ``.part`` left by a dropped connection, a crash or Ctrl-C is resumed with an HTTP ``Range``
request (by this call's retries or by the next call). Only a file of the verified size (and
SHA-256, when given) is renamed onto ``dest_dir/<name>``, so that name never holds a partial
download. On failure ``.part`` is kept when it holds a correct prefix (dropped connection,
timeout, disk full), so the next call resumes; it is removed when its content is known to be
wrong (larger than the file, SHA-256 mismatch).

Not ``files.atomic_path``: its random temporary names cannot be resumed; ``.part`` + ``os.replace``
is the same atomic idea.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import logging
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import PurePosixPath
from typing import BinaryIO

from dnn_tf import __version__, files
from dnn_tf import progress as progress_bars
from dnn_tf.files import sha256_file  # the one implementation, also importable from here

BASE_URL = "https://commondatastorage.googleapis.com/books1000/"
CANONICAL_TRAIN = "notMNIST_large.tar.gz"  # the course's train + valid archive
CANONICAL_TEST = "notMNIST_small.tar.gz"  # the course's test archive
EXPECTED_SIZES = {CANONICAL_TRAIN: 247336696, CANONICAL_TEST: 8458043}

CHUNK_SIZE = 1 << 20  # bytes read and written at a time
DEFAULT_TIMEOUT = 60.0  # seconds without data before a connection counts as dropped
DEFAULT_MAX_RETRIES = 5  # resumed attempts after a dropped connection, per call
DEFAULT_BACKOFF = 1.0  # seconds before the first retry; doubles each retry
MAX_BACKOFF = 30.0  # seconds, cap of the doubling
PART_SUFFIX = ".part"
RETRY_HTTP_CODES = frozenset({408, 425, 429, 500, 502, 503, 504})
MB = 1e6
URL_SCHEMES = ("http", "https", "file")
USER_AGENT = f"dnn_tf/{__version__} (notMNIST course reproduction)"
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)", re.IGNORECASE)
# Any "scheme://" is a URL: http, https and file are fetched, others are refused by fetch.
_URL = re.compile(r"^[a-z][a-z0-9+.-]+://", re.IGNORECASE)

logger = logging.getLogger(__name__)


class DownloadError(OSError):
    """A source that cannot be fetched: missing file, HTTP error, wrong size or checksum, disk full."""


class NetworkError(DownloadError):
    """The server cannot be reached at all: no name resolution, no connection."""


class _Retry(Exception):
    """A transient failure (dropped connection, timeout, 5xx): retry, resuming from ``.part``."""

    def __init__(self, message: str, network: bool = False):  # network: no connection at all
        super().__init__(message)
        self.network = network


def resolve_sources(train_archive: str | None, test_archive: str | None, data_dir: str,
                    progress: bool = False) -> tuple[str, str | None]:
    """Local paths of the train and test sources; URLs and canonical names are fetched into ``data_dir``.

    Args:
      train_archive: the train (+valid) source: a local path (returned as is, even a missing one,
        so that the caller's error names its role), a URL or a canonical name (``EXPECTED_SIZES``).
        None: the course's two archives, unless ``test_archive`` is given.
      test_archive: the test source (same forms); None with ``train_archive``: split from train.
      data_dir: folder for downloads.
      progress: download progress bars on stderr.

    Raises:
      DownloadError: an unsupported URL scheme or a failed download (see ``fetch``).
    """
    if train_archive is None:
        train_archive = CANONICAL_TRAIN
        test_archive = CANONICAL_TEST if test_archive is None else test_archive
    train = _resolve(train_archive, data_dir, progress)
    return train, None if test_archive is None else _resolve(test_archive, data_dir, progress)


def _resolve(source: str, data_dir: str, progress: bool) -> str:
    is_url = bool(_URL.match(source))
    if not is_url and not (source in EXPECTED_SIZES and not os.path.exists(source)):
        return source
    name = PurePosixPath(urllib.parse.urlsplit(source).path).name if is_url else source
    return fetch(source, data_dir, expected_size=EXPECTED_SIZES.get(name), progress=progress)


def fetch(
    source: str | os.PathLike,
    dest_dir: str | os.PathLike,
    expected_size: int | None = None,
    sha256: str | None = None,
    progress: bool = False,
    base_url: str = BASE_URL,
    timeout: float = DEFAULT_TIMEOUT,
    max_retries: int = DEFAULT_MAX_RETRIES,
    backoff: float = DEFAULT_BACKOFF,
) -> str:
    """Returns a local path for ``source``, downloading it into ``dest_dir`` if needed.

    Args:
      source: an existing local file or folder (returned as is); an ``http://``,
        ``https://`` or ``file://`` URL (downloaded to ``dest_dir/<basename>``); or a
        bare canonical name from ``EXPECTED_SIZES`` (``base_url + name`` with its
        expected size; a local file of that name, size and checksum in the current
        folder is used as is).
      dest_dir: folder for downloads (created if needed).
      expected_size: size in bytes the file must have (None: the server's size;
        for canonical names, None means ``EXPECTED_SIZES[name]``).
      sha256: hex SHA-256 the file must have (None: not checked).
      progress: draw a progress bar on stderr.
      base_url: where canonical names are fetched from.
      timeout: seconds without data before the connection counts as dropped.
      max_retries: resumed retries after a dropped connection, timeout or HTTP 5xx,
        within this call (0: none; the next call still resumes from ``.part``).
      backoff: seconds before the first retry; doubles each retry (tests use 0).

    Returns:
      The local path (``source`` itself for local paths, else ``dest_dir/<name>``).

    Raises:
      DownloadError: missing local path, unsupported URL, HTTP error, connection still failing after
        the retries (``NetworkError``: no connection at all), wrong size or checksum, disk full, or
        another process downloading the same file. ``dest_dir/<name>`` is never created then.
      ValueError: negative ``expected_size``, ``max_retries``, ``timeout`` or ``backoff``.
    """
    if expected_size is not None and expected_size < 0:
        raise ValueError(f"expected_size must be >= 0, got {expected_size}")
    if max_retries < 0 or timeout <= 0 or backoff < 0:
        raise ValueError(f"need max_retries >= 0, timeout > 0, backoff >= 0; got {max_retries}, {timeout}, {backoff}")
    source = os.fspath(source)
    if "://" in source:
        url = source
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme not in URL_SCHEMES:
            raise DownloadError(f"unsupported URL scheme {scheme!r} in {url} (use http, https or file)")
    elif source in EXPECTED_SIZES:
        if expected_size is None:
            expected_size = EXPECTED_SIZES[source]
        if os.path.isfile(source) and _check(source, expected_size, sha256) is None:
            return source
        url = base_url.rstrip("/") + "/" + source
    elif os.path.exists(source):
        return source
    else:
        raise _error(f"no such file or folder: {source} (give an existing path, an http(s):// or file:// URL, "
                     f"or one of {', '.join(EXPECTED_SIZES)})", errno.ENOENT)

    name = _url_basename(url)
    dest_dir = os.fspath(dest_dir)
    try:
        os.makedirs(dest_dir, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create download folder {dest_dir}: {e.strerror or e}") from e
    final = os.path.join(dest_dir, name)
    part = final + PART_SUFFIX

    if os.path.exists(final):
        problem = _check(final, expected_size, sha256)
        if problem is None:
            logger.info(f"{name}: using existing {final} ({os.path.getsize(final)} bytes)")
            return final
        logger.info(f"{name}: existing {final} is not usable ({problem}); downloading it again")

    try:
        with _open_part(part) as f:
            _download(url, f, part, name, expected_size, sha256, progress, timeout, max_retries, backoff)
    except BaseException:
        with contextlib.suppress(OSError):
            if os.path.getsize(part) == 0:
                os.remove(part)  # nothing worth resuming
        raise
    problem = _check(part, expected_size, sha256)  # sizes were checked while streaming; this re-checks
    if problem is not None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(part)
        raise DownloadError(f"{url}: the downloaded file is not usable ({problem}); removed {part}")
    os.replace(part, final)
    files.fsync_dir(dest_dir)
    logger.info(f"{name}: saved {final} ({os.path.getsize(final)} bytes)")
    return final


def _download(
    url: str, f: BinaryIO, part: str, name: str, expected_size: int | None, sha256: str | None,
    progress: bool, timeout: float, max_retries: int, backoff: float,
) -> None:
    """Fills the open ``.part`` file ``f`` with the whole of ``url``, retrying transient failures."""
    if expected_size is not None and _size(f) > expected_size:
        logger.info(f"{name}: {part} is larger than the expected {expected_size} bytes; starting over")
        _truncate(f, part)
    if expected_size is not None and _size(f) == expected_size:
        if sha256 is None or sha256_file(part).lower() == sha256.lower():
            logger.info(f"{name}: {part} is already complete")
            return
        logger.info(f"{name}: {part} has the expected size but the wrong SHA-256; starting over")
        _truncate(f, part)
    for attempt in range(max_retries + 1):
        try:
            _attempt(url, f, part, name, expected_size, progress, timeout)
            return
        except _Retry as e:
            have = _size(f)
            if attempt == max_retries:
                tries = "attempt" if attempt == 0 else "attempts"
                error = NetworkError if e.network else DownloadError
                raise error(f"{url}: {e} after {attempt + 1} {tries}; {have} bytes are kept in {part}, "
                            "run again to resume") from None
            delay = min(backoff * 2**attempt, MAX_BACKOFF)
            logger.info(f"{name}: {e}; retry {attempt + 1}/{max_retries} from byte {have} in {delay:g} s")
            time.sleep(delay)


def _attempt(
    url: str, f: BinaryIO, part: str, name: str, expected_size: int | None, progress: bool, timeout: float,
) -> None:
    """One request: appends to ``f`` from its current size, or restarts it from zero."""
    have = _size(f)
    resume = have > 0 and urllib.parse.urlsplit(url).scheme.lower() in ("http", "https")
    headers = {"User-Agent": USER_AGENT}
    if resume:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and resume:  # the range starts at or past the end: .part is complete or too long
            total = _parse_content_range(e.headers.get("Content-Range"))[2] or expected_size
            if total == have:
                return
            logger.info(f"{name}: {part} ({have} bytes) does not match the file on the server ({total} bytes); "
                        "starting over")
            _truncate(f, part)
            return _attempt(url, f, part, name, expected_size, progress, timeout)
        if e.code in RETRY_HTTP_CODES:
            raise _Retry(f"HTTP {e.code} {e.reason}") from None
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, (ConnectionError, TimeoutError)):  # refused, reset, connect timeout
            raise _Retry(f"cannot connect ({e.reason})", network=True) from None
        if isinstance(e.reason, FileNotFoundError):
            raise DownloadError(f"{url}: no such file") from None
        error = NetworkError if isinstance(e.reason, socket.gaierror) else DownloadError  # no name resolution
        raise error(f"{url}: {getattr(e.reason, 'strerror', None) or e.reason}") from None
    except (OSError, http.client.HTTPException) as e:
        raise _Retry(f"connection failed ({type(e).__name__}: {e})") from None

    with response:
        status = response.status or 200  # file:// responses have no status: a full body
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if status == 206:
            start, _, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != have:
                _truncate(f, part)
                raise _Retry(f"server sent bytes from {start} instead of {have}; starting over")
        elif status == 200:
            if have:
                if resume:
                    logger.info(f"{name}: the server does not resume downloads; starting over from byte 0")
                _truncate(f, part)
                have = 0
            total = length
        else:
            raise DownloadError(f"{url}: unexpected HTTP status {status}")
        if total is not None and expected_size is not None and total != expected_size:
            raise DownloadError(f"{url}: the server's file has {total} bytes but {expected_size} were expected; "
                                "not downloading it")
        total = total if total is not None else expected_size
        _check_free_space(part, None if total is None else total - have)
        bar = progress_bars.bar(total, name, unit="B", enabled=progress, initial=have, unit_scale=True)
        try:
            while True:
                try:
                    chunk = response.read(CHUNK_SIZE)
                except (OSError, http.client.HTTPException) as e:  # reset, timeout, IncompleteRead
                    raise _Retry(f"connection dropped at byte {have} ({type(e).__name__})") from None
                if not chunk:
                    break
                if total is not None and have + len(chunk) > total:
                    _truncate(f, part)
                    raise DownloadError(f"{url}: the server sent more than {total} bytes; discarded them")
                _write_chunk(f, chunk, part)
                have += len(chunk)
                bar.update(len(chunk))
        finally:
            bar.close()
            with _writing(part):
                f.flush()
                os.fsync(f.fileno())
    if total is not None and have < total:
        raise _Retry(f"connection closed at byte {have} of {total}")


def _write_chunk(f: BinaryIO, chunk: bytes, part: str) -> None:
    """Appends ``chunk`` to ``f``; disk errors become a DownloadError (not retried)."""
    with _writing(part):
        f.write(chunk)


def _truncate(f: BinaryIO, part: str) -> None:
    with _writing(part):
        f.truncate(0)  # append mode: the next write lands at byte 0


@contextlib.contextmanager
def _writing(part: str):
    """Turns an OSError while writing ``part`` into a DownloadError (disk full, quota, I/O error)."""
    try:
        yield
    except OSError as e:
        raise _disk_error(e, part) from e


def _disk_error(e: OSError, part: str) -> DownloadError:
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return _error(f"disk full while writing {part}; free some space and run again to resume", e.errno)
    return _error(f"cannot write {part}: {e.strerror or e}", e.errno)


def _error(message: str, code: int | None) -> DownloadError:
    """A DownloadError with ``errno`` set (its message stays the plain text)."""
    err = DownloadError(message)
    err.errno = code
    return err


def _check_free_space(part: str, needed: int | None) -> None:
    """Fails early when the disk obviously cannot hold the rest of the file."""
    if not needed:
        return
    try:
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(part))).free
    except OSError:
        return
    if free < needed:
        raise _error(f"not enough disk space for {part}: {needed / MB:.1f} MB needed, {free / MB:.1f} MB free",
                     errno.ENOSPC)


@contextlib.contextmanager
def _open_part(part: str):
    """Opens ``part`` for appending, locked against a second process downloading it."""
    try:
        f = open(part, "ab")
    except OSError as e:
        raise DownloadError(f"cannot open {part}: {e.strerror or e}") from e
    busy = f"{part} is being downloaded by another process; wait for it"
    with f, files.exclusive_lock(f.fileno(), lambda: DownloadError(busy)):
        yield f


def _check(path: str, expected_size: int | None, sha256: str | None) -> str | None:
    """Returns why ``path`` is not the wanted file, or None if it is (size first: it is cheap)."""
    size = os.path.getsize(path)
    if expected_size is not None and size != expected_size:
        return f"{size} bytes, expected {expected_size}"
    if sha256 is not None:
        got = sha256_file(path)
        if got.lower() != sha256.lower():
            return f"SHA-256 {got}, expected {sha256.lower()}"
    return None


def _url_basename(url: str) -> str:
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise DownloadError(f"cannot tell a file name from the URL {url}")
    return name


def _parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """``"bytes 10-99/100"`` -> (10, 99, 100); ``"bytes */100"`` -> (None, None, 100)."""
    match = _CONTENT_RANGE.fullmatch(value.strip()) if value else None
    if match is None:
        return None, None, None
    return tuple(int(x) if x and x != "*" else None for x in match.groups())  # type: ignore[return-value]


def _size(f: BinaryIO) -> int:
    return os.fstat(f.fileno()).st_size