"""The entropy-coded data (clause 5): the Huffman symbols of a block, looked up at every bit
position at once and chained by pointer doubling, in per-thread work space.
"""

from __future__ import annotations

import threading

import numpy as np

from .stream import _ESCAPE_BITS, SOB, _corrupt, _Huffman


class _Workspace:
    """Per-thread scratch memory reused between decodes.  Fresh large arrays come from mmap
    and page-fault on first touch (several microseconds per 4 KiB page in a VM: milliseconds
    per image), so the float image, the transform temporaries and the Huffman arrays are cut
    from two buffers that are kept (up to _KEEP_BYTES) instead."""

    def __init__(self):
        self.f32 = np.empty(0, np.float32)
        self.i64 = np.empty(0, np.int64)
        self.ints_used = 0

    def floats(self, n: int) -> np.ndarray:
        if n > self.f32.size:
            buf = np.empty(n, np.float32)
            if 4 * n > _KEEP_BYTES:
                return buf
            self.f32 = buf
        return self.f32[:n]

    def reset_ints(self, n: int) -> None:
        if n > self.i64.size:
            buf = np.empty(n, np.int64)
            if 8 * n <= _KEEP_BYTES:
                self.i64 = buf
            else:
                self._big = buf
        self.ints_used = 0

    def ints(self, n: int) -> np.ndarray:
        buf = self.i64 if self.i64.size >= self.ints_used + n else getattr(self, "_big", None)
        if buf is None or buf.size < self.ints_used + n:  # pragma: no cover - sized ahead
            return np.empty(n, np.int64)
        view = buf[self.ints_used : self.ints_used + n]
        self.ints_used += n
        return view


_KEEP_BYTES = 32 << 20  # per thread: enough for single fingers, not kept for slaps
_local = threading.local()


def _workspace() -> _Workspace:
    ws = getattr(_local, "ws", None)
    if ws is None:
        ws = _local.ws = _Workspace()
    return ws


_JUMPS = 3  # pointer-doubling levels: the Python walk visits every 8th symbol


def _chain(nxt: np.ndarray, nbits: int, start: int = 0) -> np.ndarray:
    """Bit positions of the symbols reached from bit ``start`` by ``nxt`` (position -> next
    symbol).

    ``nxt[nbits]`` (END) and ``nxt[nbits + 1]`` (BAD) point to themselves.  Pointer doubling:
    the successors 2, 4, ... 2**J symbols ahead are computed for all positions at once, a short
    Python walk takes every 2**J-th start, and the starts in between are filled in level by
    level (each level interleaves the starts with their 2**j-th successors, so the result
    stays sorted).
    """
    levels = [nxt]
    for _ in range(_JUMPS):
        last = levels[-1]
        levels.append(last[last])
    top = memoryview(levels[-1])  # type: ignore[arg-type]
    starts = []
    p = start
    while p < nbits:  # positions strictly increase: at most nbits turns (far fewer in fact)
        starts.append(p)
        p = top[p]
    s = np.array(starts, np.int64)
    for level in reversed(levels[:-1]):
        both = np.empty(2 * s.size, np.int64)
        both[0::2] = s
        both[1::2] = level[s]
        s = both
    return s


_ARANGE = np.arange(0, dtype=np.int64)


_CHUNK_BYTES = 1 << 15  # longer blocks are decoded in parts (bounded work arrays)


def _decode_block(block: np.ndarray, table: _Huffman, where: int):
    """Symbols of one entropy-coded block (unstuffed bytes): (symbols, escape bits) arrays."""
    n = block.size
    if n <= _CHUNK_BYTES:
        syms, extra, _next = _decode_span(block, 0, n, 0, table, where)
        return syms, extra
    parts = []
    start = 0  # bit offset of the first symbol in the part
    for b0 in range(0, n, _CHUNK_BYTES):  # at most n / _CHUNK_BYTES turns
        b1 = min(n, b0 + _CHUNK_BYTES)
        syms, extra, start = _decode_span(block, b0, b1, start, table, where)
        parts.append((syms, extra))
        if start < 0:  # no symbol reaches past the part (only in the last one)
            break
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _decode_span(block: np.ndarray, b0: int, b1: int, start: int, table: _Huffman, where):
    """The symbols starting in bytes b0..b1 of the block, the first at bit ``start`` of byte
    b0, and the bit offset of the next symbol in byte b1 (-1 at the end of the block)."""
    global _ARANGE
    n = b1 - b0
    nbits = 8 * n
    final = b1 == block.size
    if n == 0:
        return np.zeros(0, np.uint8), np.zeros(0, np.int64), -1
    ws = _workspace()
    ws.reset_ints((nbits + 2) * 3 + 3 * n + 16)
    bits = table.bits
    look = block[b0 : b1 + 6]  # bits after the part: for codes and escapes that cross it
    padded = ws.ints(n + 6)
    padded[: look.size] = look
    padded[look.size :] = 0
    v = ws.ints(n + 4)  # 24 bits from each byte on
    np.left_shift(padded[: n + 4], 16, out=v)
    v |= padded[1 : n + 5] << 8
    v |= padded[2 : n + 6]
    # the next `bits` bits at every bit position p = 8 i + s: computed shift by shift (long
    # inner loops), then transposed into bit order
    shifts = np.arange(24 - bits, 16 - bits, -1, dtype=np.int64)[:, None]
    by_shift = ws.ints(nbits).reshape(8, n)
    np.right_shift(v[None, :n], shifts, out=by_shift)
    np.bitwise_and(by_shift, (1 << bits) - 1, out=by_shift)
    win = ws.ints(nbits)
    win.reshape(n, 8)[...] = by_shift.T
    nxt = ws.ints(nbits + 2)
    adv = np.take(table.advance, win)  # uint8: a small table, a cheap gather
    if _ARANGE.size < nbits:
        _ARANGE = np.arange(max(nbits, 2 * _ARANGE.size), dtype=np.int64)
    np.add(_ARANGE[:nbits], adv, out=nxt[:nbits])
    end, bad = nbits, nbits + 1
    nxt[end], nxt[bad] = end, bad
    padding = set()
    if final:
        # The last bits: a code that does not fit is the padding before the next marker
        # (NBIS meets the marker while reading it and stops), and so are up to 16 bits that
        # start no code at all (NBIS reads on, bit by bit, into the marker); escape bits
        # that do not fit are an error.
        tail = max(0, nbits - 40)
        p = np.arange(tail, nbits)
        w = win[tail:]
        length = table.length[w].astype(np.int64)
        cut = (length == 0) & (p + 16 >= nbits) | (length > 0) & (p + length > nbits)
        short = (length > 0) & ~cut & (p + table.advance[w] > nbits)  # escape bits cut off
        nxt[tail:nbits][cut] = end
        nxt[tail:nbits][short] = bad
        padding = set((p[cut]).tolist())  # starts of codes cut by the end: not symbols
    else:
        np.minimum(nxt, end, out=nxt)  # symbols after the part: its end (for now)
        nxt[bad] = bad
    starts = _chain(nxt, nbits, start)
    count = int(np.searchsorted(starts, nbits))
    if count < starts.size and starts[count] == bad:
        p = int(starts[count - 1]) if count else 0  # type: ignore[assignment]
        raise _corrupt(f"escape bits cut off at bit {p % 8} of block byte {b0 + p // 8}",
                       where, SOB)  # fmt: skip
    if count and int(starts[count - 1]) in padding:
        count -= 1
    starts = starts[:count]
    w = win[starts]
    lengths = table.length[w]
    if not lengths.all():  # a position where no code starts (NBIS: undefined behaviour)
        p = int(starts[np.argmin(lengths)])  # type: ignore[assignment]
        raise _corrupt(f"invalid Huffman code at bit {p % 8} of block byte {b0 + p // 8}",
                       where, SOB)  # fmt: skip
    syms = table.symbol[w]
    extra = np.zeros(count, np.int64)
    esc = np.flatnonzero((syms >= 101) & (syms <= 106))
    if esc.size:
        q = starts[esc] + lengths[esc]
        nb = _ESCAPE_BITS[syms[esc]]  # 8 or 16 raw bits, MSB first
        extra[esc] = (v[q >> 3] >> (24 - nb - (q & 7))) & ((1 << nb) - 1)
    following = -1
    if not final and count:
        last = int(starts[-1])
        following = last + int(adv[last]) - nbits
    return syms, extra, following


def _entropy_data(data: bytes, arr: np.ndarray, ff_markers: np.ndarray, ff_stuffed, pos: int):
    """The unstuffed bytes from ``pos`` to the next marker, and the marker's position."""
    k = int(np.searchsorted(ff_markers, pos))
    if k >= ff_markers.size:
        raise _corrupt("entropy-coded data runs to the end of the data (no EOI)", pos, SOB)
    stop = int(ff_markers[k])
    lo, hi = np.searchsorted(ff_stuffed, (pos, stop))
    chunk = arr[pos:stop]
    if hi > lo:
        keep = np.ones(stop - pos, bool)
        keep[ff_stuffed[lo:hi] + 1 - pos] = False  # drop the 00 after each data FF
        chunk = chunk[keep]
    return chunk, stop
