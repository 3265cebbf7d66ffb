"""A parallel PNG encoder for 8-bit RGB, RGBA and greyscale images.

Pillow encodes a PNG on one core: filtering every row five ways, then deflating, took 0.24 s
for a 1024² image on the H200 machine's CPU and 0.06 s for 512², the largest single cost after
the UNet in a fast-mode image (docs/performance.md). This encoder makes the same kind of file
the way pigz makes a gzip file: the rows are cut into bands, each band is filtered (numpy) and
deflated (zlib) on its own thread — both release the GIL — and the bands' raw deflate streams,
each ended by a sync flush on a byte boundary, are joined into one zlib stream whose Adler-32
is combined from the bands' own. Back-references do not cross bands, which costs well under 1 %
of the size (0.02 % for a 512² image in 32-row bands; a preset dictionary from the band before
was tried and gained nothing: deflate's matches at this level come from the rows just above).

Each row gets the filter libpng's heuristic picks (least sum of absolute signed bytes of the
five: None, Sub, Up, Average, Paeth), as Pillow's encoder does, so files are as small as
Pillow's at the same zlib level. Any conforming decoder reads them; tests decode them with
Pillow and compare every pixel.

`fast=True` deflates with ISA-L (the `isal` package, which releases the GIL too) at its level 1
instead of zlib: about 10× less deflate time and files 3–8 % larger on photographs (the
filters stay the same; figures in docs/performance.md). Fast mode saves this way: the job
waits for its PNG, and at 130 it/s an SD1.5 image takes 0.23 s on an H100. Without `isal`
installed it is zlib at `level`, as always.

`scanlines=` hands over rows already filtered (by the GPU that decoded the image:
`pipeline/backend/png_scanlines.py`); they are only deflated, in the same blocks, so the file
is the same byte for byte. On the H100 machine's 16 slow cores the filtering was most of a
fast-mode PNG (15–16 ms of a 512² encode; 2.7–3.7 ms without it).
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from itertools import pairwise
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {"L": (0, 1), "RGB": (2, 3), "RGBA": (6, 4)}  # mode → (PNG colour type, bytes/px)
MIN_BAND_ROWS = 32  # a 512² image (an SD1.5 one) is 16 bands: one for each of 16 cores
MAX_BAND_BYTES = 1 << 19  # large images: more bands than threads, so none waits on the last
# Rows are filtered this many bytes at a time: the ~17× as many bytes of numpy temporaries
# then come from memory the allocator keeps, not from fresh pages the kernel has to map for
# every image (a 512² image filtered at once: 13.8 ms on one thread; in these blocks 2.7 ms).
FILTER_BLOCK_BYTES = 1 << 17
MAX_THREADS = 16
FAST_LEVEL = 1  # ISA-L's levels 1–3 give the same sizes on photographs; 1 is the fastest
_ADLER_BASE = 65521


def supports(image: Image.Image) -> bool:
    """True for the modes this encoder writes (8-bit L, RGB, RGBA)."""
    return image.mode in COLOUR_TYPES


def encode(image: Image.Image, text_chunks: Sequence[tuple[bytes, bytes]] = (),
           level: int = 4, *, fast: bool = False, scanlines: np.ndarray | None = None) -> bytes:
    """The PNG file of `image`, with `text_chunks` ((type, data), e.g. from `text_chunk`)
    placed before the image data, deflated by zlib at `level` or, with `fast`, by ISA-L when
    it is installed (see the module's docstring). `scanlines`, when given, are the image's
    rows already filtered as `filter_rows` filters them ((H, 1 + W·bpp) uint8, e.g. by the
    GPU that decoded the image): then they are only deflated. Raises ValueError for modes
    `supports` refuses and for scanlines of another shape."""
    if not supports(image):
        raise ValueError(f"cannot encode a {image.mode} image")
    if image.width == 0 or image.height == 0:
        raise ValueError("cannot encode an empty image")
    colour_type, bpp = COLOUR_TYPES[image.mode]
    if scanlines is None:
        rows = Rows(np.asarray(image, dtype=np.uint8).reshape(image.height, image.width * bpp),
                    bpp, filtered=False)
    elif scanlines.shape != (image.height, 1 + image.width * bpp) or scanlines.dtype != np.uint8:
        raise ValueError(f"scanlines of shape {scanlines.shape} ({scanlines.dtype}) do not fit "
                         f"a {image.width}×{image.height} {image.mode} image")
    else:
        rows = Rows(np.ascontiguousarray(scanlines), bpp, filtered=True)
    parts = [SIGNATURE, chunk(b"IHDR", struct.pack(">IIBBBBB", image.width, image.height, 8,
                                                    colour_type, 0, 0, 0))]
    parts += [chunk(kind, data) for kind, data in text_chunks]
    parts += _image_data(rows, level, _isal() if fast else None)
    parts.append(chunk(b"IEND", b""))
    return b"".join(parts)


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type + data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(data, zlib.crc32(kind)))


def text_chunk(key: str, text: str, *, compress: bool = False) -> tuple[bytes, bytes]:
    """A tEXt chunk when `text` is Latin-1 and not to be compressed, else an iTXt (UTF-8)."""
    keyword = key.encode("latin-1")
    if not compress:
        try:
            return b"tEXt", keyword + b"\0" + text.encode("latin-1")
        except UnicodeEncodeError:
            pass
    body = text.encode("utf-8")
    if compress:
        body = zlib.compress(body)
    # keyword \0, compression flag, method 0, empty language tag \0, empty translated key \0
    return b"iTXt", keyword + b"\0" + bytes([int(compress), 0]) + b"\0\0" + body


class Rows(NamedTuple):
    """An image's rows: the pixels (H, W·bpp), or with `filtered` its scanlines (H, 1 + W·bpp)."""

    array: np.ndarray
    bpp: int
    filtered: bool

    @property
    def stride(self) -> int:
        """Bytes of pixels in a row (W·bpp)."""
        return int(self.array.shape[1]) - (1 if self.filtered else 0)


def _image_data(rows: Rows, level: int, isal: ModuleType | None) -> list[bytes]:
    """IDAT chunks: the zlib header with the first band, one chunk a band, then Adler-32."""
    height, stride = rows.array.shape[0], rows.stride
    band_rows = max(MIN_BAND_ROWS, -(-height // _threads()))
    band_rows = min(band_rows, max(16, MAX_BAND_BYTES // stride))
    edges = [*range(0, height, band_rows), height]
    bands = len(edges) - 1
    jobs = [(rows, edges[i], edges[i + 1], level, isal, i == bands - 1) for i in range(bands)]
    run = map if bands == 1 else _pool().map  # one band: no hop to another thread
    results = list(run(lambda job: _band(*job), jobs))
    adler, out = 1, []
    # The two header bytes zlib itself writes; their level field is only informative.
    header = zlib.compress(b"", FAST_LEVEL if isal is not None else level)[:2]
    for i, ((deflated, band_adler), (start, stop)) in enumerate(
            zip(results, pairwise(edges), strict=True)):
        out.append(chunk(b"IDAT", header + deflated if i == 0 else deflated))
        adler = adler32_combine(adler, band_adler, (stop - start) * (stride + 1))
    out.append(chunk(b"IDAT", struct.pack(">I", adler)))
    return out


def _band(rows: Rows, start: int, stop: int, level: int, isal: ModuleType | None,
          last: bool) -> tuple[bytes, int]:
    """Rows [start, stop) filtered (FILTER_BLOCK_BYTES at a time; unless given filtered) and
    raw-deflated (by ISA-L's `isal_zlib` module when given); returns (bytes,
    Adler-32 of the filtered rows)."""
    deflater: Any
    if isal is not None:
        deflater = isal.compressobj(FAST_LEVEL, isal.DEFLATED, -15)
    else:
        deflater = zlib.compressobj(level, zlib.DEFLATED, -15, 9, zlib.Z_FILTERED)  # as Pillow
    step = max(1, FILTER_BLOCK_BYTES // rows.stride)
    data, adler = [], 1
    for first in range(start, stop, step):
        end = min(first + step, stop)
        # Given scanlines go in the same blocks: ISA-L's output depends on them, and the file
        # is then the same byte for byte as when this encoder filters.
        filtered = (rows.array[first:end].data.cast("B") if rows.filtered else
                    filter_rows(rows.array, first, end, rows.bpp).tobytes())
        data.append(deflater.compress(filtered))
        adler = zlib.adler32(filtered, adler)
    module = isal or zlib
    data.append(deflater.flush(module.Z_FINISH if last else module.Z_SYNC_FLUSH))
    return b"".join(data), adler


def filter_rows(pixels: np.ndarray, start: int, stop: int, bpp: int) -> np.ndarray:
    """Rows [start, stop) of `pixels` (H, W·bpp uint8), each prefixed by its filter byte and
    filtered with the type of the least sum of absolute signed bytes (libpng's heuristic).

    The filters are computed in uint8, whose arithmetic wraps mod 256 as PNG defines them;
    only Paeth's distances need 16 bits. A third of the time of computing all five in int16.
    """
    x = pixels[start:stop]
    up = (pixels[start - 1:stop - 1] if start > 0 else
          np.concatenate([np.zeros_like(pixels[:1]), pixels[start:stop - 1]]))
    left = np.zeros_like(x)
    left[:, bpp:] = x[:, :-bpp]
    up_left = np.zeros_like(x)
    up_left[:, bpp:] = up[:, :-bpp]
    average = (left & up) + ((left ^ up) >> 1)  # floor((a + b) / 2) without leaving uint8
    candidates = (x, x - left, x - up, x - average, x - _paeth(left, up, up_left))
    # |signed byte| is min(v, 256 - v): |v as int8| read back as uint8 (|-128| wraps to 128).
    # The first of equal sums wins (None, Sub, …: libpng).
    scores = np.stack([np.abs(c.view(np.int8)).view(np.uint8).sum(axis=1, dtype=np.uint32)
                       for c in candidates])
    best = scores.argmin(axis=0)
    rows = np.empty((stop - start, pixels.shape[1] + 1), dtype=np.uint8)
    rows[:, 0] = best
    for kind, filtered in enumerate(candidates):
        chosen = best == kind
        rows[chosen, 1:] = filtered[chosen]
    return rows


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Paeth's predictor of each byte: a (left), b (up) or c (up-left), whichever is nearest
    to p = a + b - c, ties in that order. |p - a| = |b - c|, |p - b| = |a - c| and
    |p - c| = |b-c + a-c| in int16, in place; the choice is made with 0x00/0xFF byte masks,
    a ninth of the time of the same with two np.where on 512² (5.7 → 0.6 ms)."""
    dist_a = b.astype(np.int16)
    dist_a -= c
    dist_b = a.astype(np.int16)
    dist_b -= c
    dist_c = dist_a + dist_b
    for dist in (dist_a, dist_b, dist_c):
        np.abs(dist, out=dist)
    take_b = np.less_equal(dist_b, dist_c).view(np.uint8)
    take_a = np.less_equal(dist_a, dist_b).view(np.uint8)
    take_a &= np.less_equal(dist_a, dist_c).view(np.uint8)
    take_b *= 255
    take_a *= 255
    out: np.ndarray = b ^ c  # b where take_b else c: c ^ ((b ^ c) & mask)
    out &= take_b
    out ^= c
    choice_a = a ^ out  # then a where take_a
    choice_a &= take_a
    out ^= choice_a
    return out


def adler32_combine(first: int, second: int, second_length: int) -> int:
    """Adler-32 of A + B from Adler-32(A), Adler-32(B) and len(B) (zlib's adler32_combine)."""
    remainder = second_length % _ADLER_BASE
    sum1 = first & 0xFFFF
    sum2 = (remainder * sum1) % _ADLER_BASE
    sum1 = (sum1 + (second & 0xFFFF) + _ADLER_BASE - 1) % _ADLER_BASE
    sum2 = (sum2 + (first >> 16) + (second >> 16) + _ADLER_BASE - remainder) % _ADLER_BASE
    return sum1 | (sum2 << 16)


@cache
def _isal() -> ModuleType | None:
    """ISA-L's zlib-compatible module, or None when the `isal` package is not installed."""
    try:
        from isal import isal_zlib
    except ImportError:
        return None
    return isal_zlib


def _threads() -> int:
    return max(1, min(MAX_THREADS, os.cpu_count() or 1))


_pool_lock = threading.Lock()  # the engine's writer threads may ask for the pool at once
_pool_instance: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _pool_instance
    with _pool_lock:
        if _pool_instance is None:
            _pool_instance = ThreadPoolExecutor(max_workers=_threads(),
                                                thread_name_prefix="png-encode")
        return _pool_instance
