"""A tar stream read in bulk: its members as ``(name, kind, size, data offset)``, exactly as ``tarfile``'s
stream mode reads them, at a fraction of its cost per member (numpy-free, nothing extracted).

tarfile parses every field of every 512-byte header in Python, ~20 us a member: most of the main
process's time on notMNIST_large's 529,119 members. ``TarStream`` keeps the decompressed bytes in a
window and parses the common header by hand (``fast_header``: a file or folder whose number fields
hold octal digits and NULs, as tarfile and GNU tar write them, with a matching checksum). Every other
header (pax and GNU long-name headers, links, devices, sparse files, other number formats, bad
checksums) goes to tarfile's own parsers, and bad headers are treated as ``TarFile.next`` treats them:
at the start of the stream they raise ``tarfile.ReadError``, later on they end the archive.
"""

from __future__ import annotations

import re
import tarfile
import zlib
from typing import Callable, Iterator

import numpy as np

from dnn_tf.notmnist import DataError

MAX_HEADER_BYTES = 1 << 16  # GNU long-name / pax extended header payload (real ones are < 1 KB)
READ_BYTES = 1 << 20  # decompressed bytes read at a time
MAX_NAME_CHARS = 100  # of a member name quoted in an error
BLOCK = tarfile.BLOCKSIZE
# fast_header: the plain file / folder types, the characters of their number fields, the checksum field.
PLAIN_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE)
DIGITS_NUL = b"01234567\0"
CHKSUM_FIELD = (148, 156)
CHKSUM_BLANKS = 8 * ord(" ")  # a checksum is summed with its own field read as spaces
CHKSUM = re.compile(rb" *([0-7]*) *(?:\0|\Z)")  # what tarfile's nti accepts up to the first NUL (a subset)
CHKSUM_END = b"\0 "  # after the 6 digits of "%06o\0 ", how tarfile and GNU tar write a checksum
ZERO_BLOCK = bytes(BLOCK)
# TarStream._plain_run: the same test on every header in the window at once.
_DIR, _AREG, _SLASH = tarfile.DIRTYPE[0], tarfile.AREGTYPE[0], ord("/")
_REG_DIR = (tarfile.REGTYPE[0], _DIR)
_SIZE_DIGITS = 11  # "%011o\0", how tarfile and GNU tar write a size
_NUMBER_BYTE = np.zeros(256, bool)
_NUMBER_BYTE[list(DIGITS_NUL)] = True
_OCTAL_BYTE = np.zeros(256, bool)
_OCTAL_BYTE[list(DIGITS_NUL[:-1])] = True
_CHKSUM_DIGITS = 6
_CHKSUM_WEIGHTS = 8 ** np.arange(_CHKSUM_DIGITS - 1, -1, -1)
_CHKSUM_END = np.frombuffer(CHKSUM_END, np.uint8)

Member = tuple[str, str, int, int]  # name, kind ("file", "dir", "symbolic link", ...), size, data offset


class SafeTarInfo(tarfile.TarInfo):
    """TarInfo that refuses negative sizes and oversized long-name / pax headers before tarfile reads them.

    (tarfile reads such a header's whole payload into memory; ``_proc_member`` is
    tarfile's documented hook for subclasses.)
    """

    _HEADER_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                     tarfile.SOLARIS_XHDTYPE)

    def _proc_member(self, tarfile_):
        if self.size < 0:
            raise DataError(f"member {self.name[:MAX_NAME_CHARS]!r} has a negative size")
        if self.type in self._HEADER_TYPES and self.size > MAX_HEADER_BYTES:
            raise DataError(f"a long-name/pax header of {self.size:,} bytes (limit {MAX_HEADER_BYTES:,})")
        return super()._proc_member(tarfile_)

    def kind(self) -> str:
        """"file" (regular, not sparse), "dir", "symbolic link", "hard link", "device" or "other"."""
        if self.isdir() or self.issym() or self.islnk():
            return "dir" if self.isdir() else "symbolic link" if self.issym() else "hard link"
        if self.ischr() or self.isblk() or self.isfifo():
            return "device"
        return "file" if self.isfile() and not self.issparse() else "other"


def fast_header(h: bytes) -> tuple[str, str, int] | None:
    """``(name, kind, size)`` of a plain file or folder header, as ``tarfile.TarInfo.frombuf`` reads it;
    None for any other header (and for an all-zero one)."""
    kind = h[156:157]
    if kind not in PLAIN_TYPES or h[100:148].translate(None, DIGITS_NUL) or h[329:345].translate(None, DIGITS_NUL):
        return None
    if h[154:156] == CHKSUM_END and not h[148:154].translate(None, DIGITS_NUL[:-1]):
        chksum = int(h[148:154], 8)
    else:
        match = CHKSUM.match(h, *CHKSUM_FIELD)
        chksum = int(match[1] or b"0", 8) if match else -1
    if chksum != sum(h.translate(None, b"\0")) - sum(h[slice(*CHKSUM_FIELD)]) + CHKSUM_BLANKS:  # (NULs add 0)
        return None
    end = h.find(b"\0", 124, 136)
    size = int(h[124:end if end >= 0 else 136] or b"0", 8)
    end = h.find(b"\0", 0, 100)
    name = h[:end if end >= 0 else 100].decode(tarfile.ENCODING, "surrogateescape")
    if kind == tarfile.AREGTYPE and name.endswith("/"):
        kind = tarfile.DIRTYPE
    if kind == tarfile.DIRTYPE:
        name = name.rstrip("/")
    if h[345]:  # the ustar prefix
        name = _nts(h[345:500]) + "/" + name
    return name, "dir" if kind == tarfile.DIRTYPE else "file", size


def _nts(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode(tarfile.ENCODING, "surrogateescape")


class TarStream:
    """The members of a decompressed tar stream, read at most ``limit`` bytes (beyond: ``on_limit()`` is raised).

    The bytes are held in a window ``[base, base + len(buf))`` of about ``READ_BYTES`` that forgets what
    lies before the member being read (offsets only go forward). The stream is read with ``read1``,
    ahead of need; an error of the decompressor (a truncated or corrupt stream) is raised only once
    bytes past it are needed, as tarfile would raise it. The object is also the ``TarFile`` that
    tarfile's parsers read from (``fileobj``, ``offset`` of the next header, ``pax_headers``,
    ``encoding``, ``errors``).

    Attributes:
      count: bytes read from the stream so far.
      offset: where the next header starts (``TarFile.offset``): how many bytes the members so far claim.
    """

    encoding, errors = tarfile.ENCODING, "surrogateescape"  # TarFile's defaults

    def __init__(self, stream, limit: int, on_limit: Callable[[], Exception]):
        self._stream, self._limit, self._on_limit = stream, limit, on_limit
        self.buf, self.base, self.count, self.pos, self.offset, self.eof = b"", 0, 0, 0, 0, False
        self.fileobj, self.pax_headers, self._error = self, {}, None

    def members(self) -> Iterator[Member]:
        """The members after those read so far, to the end of the archive (``offset`` follows them).

        Raises:
          What ``next`` raises.
        """
        while True:
            run = self._plain_run()
            for name, kind, size, data_at, after in run:
                self.offset = after
                yield name, kind, size, data_at
            if not run:
                member = self.next()
                if member is None:
                    return
                yield member

    def _plain_run(self) -> list[tuple[str, str, int, int, int]]:
        """The plain headers that come next in the window, tested all at once as ``fast_header`` tests one
        (number fields, 11-digit size, checksum in tarfile's own format), with the offset after each
        member; [] if none."""
        buf, base = self.buf, self.base
        at, last, starts, skips = self.offset - base, len(buf) - BLOCK, [], []
        while not self.pax_headers and 0 <= at <= last:
            kind = buf[at + 156]
            if kind == _AREG:  # a folder if its name ends with "/"
                end = buf.find(b"\0", at, at + 100) % (at + 101)  # (no NUL: the field's end)
                folder = end > at and buf[end - 1] == _SLASH
            elif kind in _REG_DIR:
                folder = kind == _DIR
            else:
                break
            try:
                size = int(buf[at + 124:at + 124 + _SIZE_DIGITS], 8)  # checked to be digits below
            except ValueError:
                break
            starts.append(at)
            skips.append(0 if folder else -(-size // BLOCK))
            at += (1 + skips[-1]) * BLOCK
        if not starts:
            return []
        h = np.frombuffer(buf, np.uint8)[np.asarray(starts)[:, None] + np.arange(BLOCK)]
        digits = h[:, 148:148 + _CHKSUM_DIGITS]
        ok = (_NUMBER_BYTE[h[:, 100:148]].all(1) & _NUMBER_BYTE[h[:, 329:345]].all(1) & _OCTAL_BYTE[digits].all(1)
              & (h[:, 154:156] == _CHKSUM_END).all(1) & (h[:, 124 + _SIZE_DIGITS] == 0))
        ok &= ((digits - ord("0")) * _CHKSUM_WEIGHTS).sum(1) == (
            h.sum(1, dtype=np.int64) - h[:, slice(*CHKSUM_FIELD)].sum(1, dtype=np.int64) + CHKSUM_BLANKS)
        run = []
        for at, skip in zip(starts[:len(ok) if ok.all() else int(np.argmin(ok))], skips):
            if buf[at + 345]:  # a ustar prefix
                name, kind, size = fast_header(buf[at:at + BLOCK])
            else:
                end = buf.find(b"\0", at, at + 100)
                name = buf[at:end if end >= 0 else at + 100].decode(tarfile.ENCODING, "surrogateescape")
                folder = buf[at + 156] == _DIR or (buf[at + 156] == _AREG and name.endswith("/"))
                name, kind = (name.rstrip("/"), "dir") if folder else (name, "file")
                size = int(buf[at + 124:at + 124 + _SIZE_DIGITS], 8)
            run.append((name, kind, size, base + at + BLOCK, base + at + (1 + skip) * BLOCK))
        return run

    def next(self) -> Member | None:
        """The next member; None at the end of the archive.

        Raises:
          tarfile.ReadError: a bad first header, a stream that ends inside a member, a bad header after
            a pax or long-name header; DataError: see ``SafeTarInfo``, ``on_limit``; whatever the
            decompressor raises on a corrupt stream.
        """
        offset = self.offset
        at = offset - self.base
        if not (0 <= at <= len(self.buf) - BLOCK):  # not in the window yet
            n = self.need(offset, offset + BLOCK)
            if n < 0:
                raise tarfile.ReadError("unexpected end of data")
            at = 0 if n == BLOCK else -1
        if at >= 0 and not self.pax_headers:  # global pax headers apply to every later member: tarfile's job
            header = self.buf[at:at + BLOCK]
            if header == ZERO_BLOCK:
                return None
            fast = fast_header(header)
            if fast is not None:
                name, kind, size = fast
                blocks = -(-size // BLOCK) if kind == "file" else 0  # tarfile skips no folder data
                self.offset = offset + (1 + blocks) * BLOCK
                return name, kind, size, offset + BLOCK
        return self._slow(offset)

    def _slow(self, offset: int) -> Member | None:
        """The member at ``offset`` read by tarfile's parsers, bad headers handled as in ``TarFile.next``."""
        self.pos = offset
        try:
            info = SafeTarInfo.fromtarfile(self)
        except tarfile.EOFHeaderError:
            return None
        except (tarfile.InvalidHeaderError, tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError) as e:
            if offset == 0:  # later on, tarfile takes a bad header for the end of the archive
                raise tarfile.ReadError("empty file" if isinstance(e, tarfile.EmptyHeaderError) else str(e)) from None
            return None
        except tarfile.SubsequentHeaderError as e:
            raise tarfile.ReadError(str(e)) from None
        except zlib.error as e:
            raise tarfile.ReadError(f"zlib error: {e}") from None
        return info.name, info.kind(), info.size, info.offset_data

    def _read(self, size: int) -> bytes:
        if self._error is not None:
            raise self._error
        room = self._limit - self.count + 1  # one byte more than allowed shows that the limit is crossed
        data = b"" if self.eof else self._stream.read1(max(min(size, room), 1))
        self.count += len(data)
        if self.count > self._limit:
            raise self._on_limit()
        self.eof = not data
        return data

    def need(self, start: int, end: int) -> int:
        """How many bytes of ``[start, end)`` the window holds now (fewer at the end); < 0: the stream ends before
        ``start``."""
        have = self.base + len(self.buf)
        if end > have and not self.eof:
            parts = [self.buf[start - self.base:]] if start < have else []
            while have < start and not self.eof:  # skip what lies between (a refused member's bytes)
                have += len(self._read(min(start - have, READ_BYTES)))
            size, ahead = have - start, max(end - start, READ_BYTES)  # read ahead: runs of headers (_plain_run)
            while 0 <= size < ahead and not self.eof:
                try:
                    parts.append(self._read(ahead - size))
                except (DataError, MemoryError):
                    raise
                except Exception as e:  # noqa: BLE001 - a corrupt stream is an error once its bytes are needed
                    if size < end - start:
                        raise
                    self._error = e
                    break
                size += len(parts[-1])
            self.buf, self.base = b"".join(parts), start if size >= 0 else have
        return min(end, self.base + len(self.buf)) - start if start >= self.base else -1

    def take(self, start: int, size: int) -> bytes:
        """The bytes ``[start, start + size)`` (fewer at the end of the stream)."""
        at = start - self.base
        if not (0 <= at <= len(self.buf) - size):
            n = self.need(start, start + size)
            at, size = start - self.base, max(n, 0)
        return self.buf[at:at + size]

    def read(self, size: int) -> bytes:
        data = self.take(self.pos, size)
        self.pos += len(data)
        return data

    def tell(self) -> int:
        return self.pos

    def drain(self) -> None:
        """Reads to the end of the stream (within the limit), so a truncated or corrupt compressed stream is noticed."""
        self.buf = b""
        while self._read(READ_BYTES):
            pass
