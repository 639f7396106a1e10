"""The members of a tar stream as ``(name, kind, size, data offset)``, read by ``tarfile`` (nothing extracted).

``TarReader`` is the file object that ``tarfile.open(fileobj=..., mode="r:")`` reads: the decompressed
stream seen through a window, forward only, every byte counted against a budget (decompression bombs).
Before tarfile acts on a header, the reader refuses one that claims a negative size or a long-name /
pax payload over ``MAX_HEADER_BYTES`` (tarfile would read that payload into memory), and it refuses
any single read over ``MAX_HEADER_BYTES``, so tarfile never allocates what a header claims. Member
data are read with ``TarReader.take`` at ``TarInfo.offset_data``.

``members`` reads each header with tarfile, except runs of plain file and folder headers, which
``plain_headers`` takes from the window in bulk: the one hand-written tar parser kept, because tarfile's
parsing of 529,119 headers, in Python, slows the prepare of notMNIST_large by a third (docs/performance.md).
"""

from __future__ import annotations

import tarfile
from typing import Callable, Iterator

import numpy as np

from dnn_tf.notmnist import DataError

MAX_HEADER_BYTES = 1 << 16  # GNU long-name / pax extended header payload (real ones are < 1 KB)
READ_BYTES = 1 << 18  # decompressed bytes read at a time
MAX_NAME_CHARS = 100  # of a member name quoted in an error
BLOCK = tarfile.BLOCKSIZE
PAYLOAD_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                 tarfile.SOLARIS_XHDTYPE)  # headers whose payload tarfile reads into memory
# Member types whose data tarfile does not skip (it skips data after regular files and types it does not
# know): their next header starts right after their own.
NO_DATA_TYPES = (tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE,
                 tarfile.FIFOTYPE)
# plain_headers: the header fields it checks (byte offsets of the ustar layout) and how.
_NAME_END, _NUMBERS, _SIZE, _CHKSUM, _TYPE, _DEVICES, _PREFIX = 100, (100, 148), 124, 148, 156, (329, 345), 345
_SIZE_DIGITS, _CHKSUM_DIGITS = 11, 6  # "%011o\0" and "%06o\0 ", how tarfile and GNU tar write them
_CHKSUM_END = np.frombuffer(b"\0 ", np.uint8)
_CHKSUM_BLANKS = 8 * ord(" ")  # a checksum is summed with its own field read as spaces
_CHKSUM_WEIGHTS = 8 ** np.arange(_CHKSUM_DIGITS - 1, -1, -1)
_NUMBER_BYTE = np.zeros(256, bool)
_NUMBER_BYTE[list(b"01234567\0")] = True
_OCTAL_BYTE = np.zeros(256, bool)
_OCTAL_BYTE[list(b"01234567")] = True
_REG, _AREG, _DIR, _SLASH = tarfile.REGTYPE[0], tarfile.AREGTYPE[0], tarfile.DIRTYPE[0], ord("/")

Member = tuple[str, str, int, int]  # name, kind ("file", "dir", "symbolic link", ...), size, data offset


class TarReader:
    """The decompressed bytes of ``stream`` as the forward-only file object tarfile reads, at most ``limit``
    of them (beyond: ``on_limit()`` is raised).

    The window ``[base, base + len(buf))`` holds about ``READ_BYTES`` read ahead with ``read1`` and
    forgets what lies before the position being read. An error of the decompressor (a truncated or
    corrupt stream) is raised only once bytes past it are needed.

    Attributes:
      count: bytes read from the stream so far.
    """

    def __init__(self, stream, limit: int, on_limit: Callable[[], Exception]):
        self._stream, self._limit, self._on_limit = stream, limit, on_limit
        self.buf, self.base, self.count, self._pos, self._eof, self._error = b"", 0, 0, 0, False, None

    # The file object tarfile reads: tell, seek (forward), read (headers and their payloads only).

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        pos += (0, self._pos)[whence]
        if pos < self._pos:
            raise tarfile.StreamError("seeking backwards is not allowed")
        self._pos = pos  # the bytes in between are skipped when a later read needs what follows them
        return pos

    def read(self, size: int = -1) -> bytes:
        """What tarfile reads: a header (checked first, see ``refuse_hostile``) or a header's payload.

        Raises:
          DataError: a read over ``MAX_HEADER_BYTES`` (a long-name/pax payload claiming more), or see
            ``refuse_hostile``.
        """
        if not 0 <= size <= MAX_HEADER_BYTES:
            raise DataError(f"a long-name/pax header of {size:,} bytes (limit {MAX_HEADER_BYTES:,})")
        data = self.take(self._pos, size)
        if size == BLOCK and self._pos % BLOCK == 0:
            refuse_hostile(data)
        self._pos += len(data)
        return data

    # Our own reads: member data and the plain headers, at absolute offsets.

    def take(self, start: int, size: int) -> bytes:
        """The bytes ``[start, start + size)`` (fewer at the end of the stream)."""
        at = start - self.base
        if not (0 <= at and at + size <= len(self.buf)):
            n = self.need(start, start + size)
            at, size = start - self.base, max(n, 0)
        return self.buf[at:at + size]

    def need(self, start: int, end: int) -> int:
        """How many bytes of ``[start, end)`` the window holds now, having read what it lacks (fewer at the
        end of the stream); < 0: the stream ends before ``start``."""
        have = self.base + len(self.buf)
        if end > have and not self._eof:
            parts = [self.buf[start - self.base:]] if start < have else []
            while have < start and not self._eof:  # skip what lies between (a refused member's bytes)
                have += len(self._read(min(start - have, READ_BYTES)))
            size, ahead = have - start, max(end - start, READ_BYTES)  # read ahead: runs of plain headers
            while 0 <= size < ahead and not self._eof:
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

    def reaches(self, end: int) -> bool:
        """Whether the stream holds ``end`` bytes (reading up to there if need be)."""
        return end <= self.base + len(self.buf) or self.need(end - 1, end) > 0

    def drain(self) -> None:
        """Reads to the end of the stream (within the limit), so a truncated or corrupt compressed stream is noticed."""
        self.buf = b""
        while self._read(READ_BYTES):
            pass

    def _read(self, size: int) -> bytes:
        if self._error is not None:
            raise self._error
        room = self._limit - self.count + 1  # one byte more than allowed shows that the limit is crossed
        data = b"" if self._eof else self._stream.read1(max(min(size, room), 1))
        self.count += len(data)
        if self.count > self._limit:
            raise self._on_limit()
        self._eof = not data
        return data


def refuse_hostile(header: bytes) -> None:
    """Refuses, before tarfile acts on it, a header claiming a negative size or a long-name/pax payload over
    ``MAX_HEADER_BYTES``; tarfile's own ``TarInfo.frombuf`` parses it (only if its type or size field
    could say so: most headers are left to tarfile alone).

    Raises:
      DataError: such a header.
    """
    size_field = header[_SIZE:_SIZE + 12]
    if header[_TYPE:_TYPE + 1] not in PAYLOAD_TYPES and b"-" not in size_field and size_field[:1] != b"\xff":
        return
    try:
        info = tarfile.TarInfo.frombuf(header, tarfile.ENCODING, "surrogateescape")
    except tarfile.HeaderError:
        return  # tarfile says what is wrong with it
    if info.size < 0:
        raise DataError(f"member {info.name[:MAX_NAME_CHARS]!r} has a negative size")
    if info.type in PAYLOAD_TYPES and info.size > MAX_HEADER_BYTES:
        raise DataError(f"a long-name/pax header of {info.size:,} bytes (limit {MAX_HEADER_BYTES:,})")


def kind(info: tarfile.TarInfo) -> str:
    """"file" (regular, not sparse), "dir", "symbolic link", "hard link", "device" or "other"."""
    if info.isdir() or info.issym() or info.islnk():
        return "dir" if info.isdir() else "symbolic link" if info.issym() else "hard link"
    if info.ischr() or info.isblk() or info.isfifo():
        return "device"
    return "file" if info.isfile() and not info.issparse() else "other"


def next_header(info: tarfile.TarInfo) -> int | None:
    """Where the header after ``info`` starts, as tarfile reads it: after its data, padded to a block,
    unless tarfile reads no data after its type; None for a sparse member (tarfile's own business)."""
    if info.issparse():
        return None
    return info.offset_data + (0 if info.type in NO_DATA_TYPES else -(-info.size // BLOCK) * BLOCK)


def members(reader: TarReader, fast: bool = True) -> Iterator[tuple[Member, int | None]]:
    """The members of the archive and, with each, where the header after it starts (None: unknown).

    Each header is read by a ``tarfile.TarFile`` opened at it (so none keeps a list of every member),
    and bad headers are what tarfile makes of them: at the start of the stream a ``tarfile.ReadError``,
    later on the end of the archive. After a global pax header, or a member whose end only tarfile knows
    (sparse), one TarFile reads the rest. With ``fast``, runs of plain headers are read by ``plain_headers``.

    Raises:
      DataError: see ``TarReader.read``, or a member with a negative size; whatever tarfile and the
        decompressor raise on a bad archive.
    """
    at = 0
    while True:
        run = plain_headers(reader, at) if fast else []
        for member, after in run:
            yield member, after
            at = after
        if run:
            continue
        if not reader.reaches(at):  # as TarFile.next: the stream ends inside the last member
            raise tarfile.ReadError("unexpected end of data")
        reader.seek(at)
        tar = tarfile.open(fileobj=reader, mode="r:")  # reads the header at `at` (ReadError if bad and at 0)
        for info in tar:
            if info.size < 0:  # (a pax record can say so too)
                raise DataError(f"member {info.name[:MAX_NAME_CHARS]!r} has a negative size")
            after = next_header(info) if not tar.pax_headers else None
            yield (info.name, kind(info), info.size, info.offset_data), after
            if after is not None:
                at = after
                break
        else:
            return


def plain_headers(reader: TarReader, at: int) -> list[tuple[Member, int]]:
    """The run of plain file and folder headers starting at ``at``, each with where the next header starts;
    [] if the header at ``at`` is not one.

    Plain: type "0", "\\0" or "5", no ustar prefix, number fields of octal digits and NULs, an 11-digit
    size and a 6-digit checksum as tarfile and GNU tar write them, matching the header's unsigned sum.
    For those, ``tarfile.TarInfo.frombuf`` reads exactly this name, type and size (``tests/test_archive.py``
    checks it on random and damaged archives); anything else is left to tarfile.
    """
    if reader.need(at, at + BLOCK) < BLOCK:
        return []
    buf, base = reader.buf, reader.base
    pos, last, starts, sizes, folders = at - base, len(buf) - BLOCK, [], [], []
    while pos <= last:
        kind_ = buf[pos + _TYPE]
        if kind_ not in (_REG, _AREG, _DIR) or buf[pos + _PREFIX]:
            break
        try:
            size = int(buf[pos + _SIZE:pos + _SIZE + _SIZE_DIGITS], 8)  # its characters are checked below
        except ValueError:
            break
        if size < 0:  # (int takes a sign: such a header is tarfile's, and refuse_hostile's)
            break
        folder = kind_ == _DIR
        if kind_ == _AREG:  # a folder if its name ends with "/"
            end = buf.find(b"\0", pos, pos + _NAME_END) % (pos + _NAME_END + 1)  # (no NUL: the field's end)
            folder = end > pos and buf[end - 1] == _SLASH
        starts.append(pos)
        sizes.append(size)
        folders.append(folder)
        pos += BLOCK + (0 if folder else -(-size // BLOCK) * BLOCK)  # tarfile reads no data after a folder
    if not starts:
        return []
    h = np.frombuffer(buf, np.uint8)[np.asarray(starts)[:, None] + np.arange(BLOCK)]
    digits = h[:, _CHKSUM:_CHKSUM + _CHKSUM_DIGITS]
    ok = (_NUMBER_BYTE[h[:, slice(*_NUMBERS)]].all(1) & _NUMBER_BYTE[h[:, slice(*_DEVICES)]].all(1)
          & _OCTAL_BYTE[digits].all(1) & (h[:, _CHKSUM + _CHKSUM_DIGITS:_TYPE] == _CHKSUM_END).all(1)
          & (h[:, _SIZE + _SIZE_DIGITS] == 0))
    ok &= ((digits - ord("0")) * _CHKSUM_WEIGHTS).sum(1) == (
        h.sum(1, dtype=np.int64) - h[:, _CHKSUM:_TYPE].sum(1, dtype=np.int64) + _CHKSUM_BLANKS)
    run = []
    for pos, size, folder in zip(starts[:len(ok) if ok.all() else int(np.argmin(ok))], sizes, folders):
        end = buf.find(b"\0", pos, pos + _NAME_END)
        name = buf[pos:end if end >= 0 else pos + _NAME_END].decode(tarfile.ENCODING, "surrogateescape")
        data_at = base + pos + BLOCK
        if folder:
            run.append(((name.rstrip("/"), "dir", size, data_at), data_at))
        else:
            run.append(((name, "file", size, data_at), data_at + -(-size // BLOCK) * BLOCK))
    return run
