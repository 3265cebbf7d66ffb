"""The parallel PNG encoder: every pixel decodes back, files match Pillow's size and filters."""

from __future__ import annotations

import io
import struct
import sys
import threading
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from desktop_app.gallery import png_encode


def _smooth(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A photo-like image: gradients plus a little noise (compresses, exercises all filters)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    base = np.stack([(x * (c + 1) + y * (3 - c)) % 256 for c in range(channels)], axis=-1)
    pixels = (base + rng.integers(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
    return Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode)


def _decode(data: bytes) -> PngImagePlugin.PngImageFile:
    image = Image.open(io.BytesIO(data))
    assert isinstance(image, PngImagePlugin.PngImageFile)
    image.load()  # Pillow checks every chunk's CRC while reading
    return image


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == png_encode.SIGNATURE
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body)
        out.append((kind, body))
        pos += 12 + length
    return out


def _filter_bytes(data: bytes, height: int) -> list[int]:
    """The filter type of each row of a PNG (8-bit, not interlaced)."""
    stream = b"".join(body for kind, body in _chunks(data) if kind == b"IDAT")
    raw = zlib.decompress(stream)
    stride = len(raw) // height
    return [raw[row * stride] for row in range(height)]


def record_filtering(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, the number of rows of every `filter_rows` call, in order."""
    filtered: list[int] = []
    real = png_encode.filter_rows

    def recording(pixels: np.ndarray, start: int, stop: int, bpp: int) -> np.ndarray:
        filtered.append(stop - start)
        return real(pixels, start, stop, bpp)

    monkeypatch.setattr(png_encode, "filter_rows", recording)
    return filtered


@pytest.mark.parametrize("fast", [False, True], ids=["zlib", "isal"])
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
@pytest.mark.parametrize("size", [(1, 1), (1, 300), (300, 1), (333, 77), (512, 517)])
def test_every_pixel_decodes_back(mode: str, size: tuple[int, int], fast: bool) -> None:
    image = _smooth(*size, mode=mode)
    back = _decode(png_encode.encode(image, fast=fast))
    assert back.mode == mode and back.size == size
    assert np.array_equal(np.asarray(back), np.asarray(image))


@pytest.mark.parametrize("fast", [False, True], ids=["zlib", "isal"])
def test_random_pixels_decode_back_across_many_bands(monkeypatch: pytest.MonkeyPatch,
                                                     fast: bool) -> None:
    # Small bands: 500 rows → 32 bands of 16 rows on 4 threads, each ended by a sync flush.
    monkeypatch.setattr(png_encode, "MAX_BAND_BYTES", 16 * 90)
    monkeypatch.setattr(png_encode, "_threads", lambda: 4)
    pixels = np.random.default_rng(1).integers(0, 256, (500, 30, 3), dtype=np.uint8)
    data = png_encode.encode(Image.fromarray(pixels), fast=fast)
    assert sum(kind == b"IDAT" for kind, _ in _chunks(data)) == 32 + 1  # + the Adler-32 chunk
    assert np.array_equal(np.asarray(_decode(data)), pixels)
    assert zlib.decompress(b"".join(body for kind, body in _chunks(data) if kind == b"IDAT"))


def test_rows_filtered_in_blocks_make_the_same_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows filtered 5 at a time inside each band: zlib's stream does not depend on how its
    input is fed, so the file is the same byte for byte; ISA-L's decodes back."""
    image = _smooth(90, 333)
    whole, whole_fast = png_encode.encode(image), png_encode.encode(image, fast=True)
    monkeypatch.setattr(png_encode, "FILTER_BLOCK_BYTES", 5 * 90 * 3)
    filtered = record_filtering(monkeypatch)
    assert png_encode.encode(image) == whole
    assert max(filtered) == 5 and sum(filtered) == 333
    blocked_fast = png_encode.encode(image, fast=True)
    assert np.array_equal(np.asarray(_decode(blocked_fast)), np.asarray(image))
    assert _filter_bytes(blocked_fast, 333) == _filter_bytes(whole_fast, 333)


def test_fast_deflates_every_band_with_isal_and_keeps_the_filters(
        monkeypatch: pytest.MonkeyPatch) -> None:
    isal = png_encode._isal()
    assert isal is not None, "the isal package is a dependency: fast mode's PNGs need it"
    made: list[int] = []

    class Recording:
        def __getattr__(self, name: str) -> object:
            return getattr(isal, name)

        def compressobj(self, level: int, *args: object) -> object:
            made.append(level)
            return isal.compressobj(level, *args)

    monkeypatch.setattr(png_encode, "_isal", Recording)
    monkeypatch.setattr(png_encode, "_threads", lambda: 4)
    image = _smooth(512, 384)
    fast, normal = png_encode.encode(image, fast=True), png_encode.encode(image)
    assert made == [png_encode.FAST_LEVEL] * 4  # one deflater a band, none from zlib
    assert fast != normal
    assert np.array_equal(np.asarray(_decode(fast)), np.asarray(image))
    assert _filter_bytes(fast, 384) == _filter_bytes(normal, 384)
    assert len(fast) <= 1.15 * len(normal)  # measured +3–8 % on photographs


def test_fast_without_isal_is_the_zlib_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "isal", None)  # import isal → ImportError
    png_encode._isal.cache_clear()
    try:
        assert png_encode._isal() is None
        image = _smooth(200, 150)
        assert png_encode.encode(image, fast=True) == png_encode.encode(image)
    finally:
        png_encode._isal.cache_clear()


def test_bands_are_encoded_on_several_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(png_encode, "_threads", lambda: 4)
    names: set[str] = set()
    band = png_encode._band

    def recording(*args: object) -> tuple[bytes, int]:
        names.add(threading.current_thread().name)
        return band(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(png_encode, "_band", recording)
    monkeypatch.setattr(png_encode, "_pool_instance", None)  # a fresh pool of 4 for this test
    image = _smooth(64, 512)
    assert np.array_equal(np.asarray(_decode(png_encode.encode(image))), np.asarray(image))
    assert len(names) > 1 and all(name.startswith("png-encode") for name in names)
    png_encode._pool().shutdown()


def test_same_size_and_row_filters_as_pillow_at_the_same_level() -> None:
    image = _smooth(512, 384)
    ours = png_encode.encode(image, level=4)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=4)
    theirs = buffer.getvalue()
    assert _filter_bytes(ours, 384) == _filter_bytes(theirs, 384)
    assert len(set(_filter_bytes(ours, 384))) > 1  # the heuristic did choose between filters
    assert abs(len(ours) - len(theirs)) <= 0.02 * len(theirs)


def _reference_filter(pixels: np.ndarray, bpp: int) -> list[list[int]]:
    """The PNG filters and libpng's choice, byte by byte as the specification writes them."""
    height, stride = pixels.shape
    rows = []
    for y in range(height):
        def byte(row: int, col: int) -> int:
            return int(pixels[row, col]) if row >= 0 and col >= 0 else 0

        def paeth(a: int, b: int, c: int) -> int:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            return a if pa <= pb and pa <= pc else b if pb <= pc else c

        filtered = []
        for predict in (lambda a, b, c: 0, lambda a, b, c: a, lambda a, b, c: b,
                        lambda a, b, c: (a + b) // 2, paeth):
            filtered.append([(byte(y, i) - predict(byte(y, i - bpp), byte(y - 1, i),
                                                   byte(y - 1, i - bpp))) % 256
                             for i in range(stride)])
        scores = [sum(min(v, 256 - v) for v in row) for row in filtered]
        kind = scores.index(min(scores))
        rows.append([kind, *filtered[kind]])
    return rows


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([1, 3, 4]), st.integers(1, 6), st.integers(1, 7), st.integers(0, 2**32 - 1),
       st.sampled_from([(0, 256), (120, 137), (0, 3)]))
def test_filters_match_the_specification_byte_for_byte(
        bpp: int, height: int, width: int, seed: int, bounds: tuple[int, int]) -> None:
    # Narrow value ranges make ties and the 128 / -128 wrap common.
    pixels = np.random.default_rng(seed).integers(*bounds, (height, width * bpp), dtype=np.uint8)
    split = max(1, height // 2)  # a band that starts mid-image reads the row above it
    ours = np.concatenate([png_encode.filter_rows(pixels, 0, split, bpp)] + (
        [png_encode.filter_rows(pixels, split, height, bpp)] if split < height else []))
    assert ours.tolist() == _reference_filter(pixels, bpp)


@pytest.mark.parametrize("fast", [False, True], ids=["zlib", "isal"])
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_given_scanlines_make_the_same_file_byte_for_byte(
        monkeypatch: pytest.MonkeyPatch, mode: str, fast: bool) -> None:
    """Scanlines filtered elsewhere (the GPU) are only deflated, in the blocks this encoder
    filters in (ISA-L's stream depends on them): the file is the one it makes itself."""
    monkeypatch.setattr(png_encode, "_threads", lambda: 3)
    monkeypatch.setattr(png_encode, "FILTER_BLOCK_BYTES", 7 * 61 * 4)  # several blocks a band
    image = _smooth(61, 259, mode=mode)
    bpp = png_encode.COLOUR_TYPES[mode][1]
    pixels = np.asarray(image).reshape(259, 61 * bpp)
    scanlines = png_encode.filter_rows(pixels, 0, 259, bpp)
    filtered = record_filtering(monkeypatch)
    given = png_encode.encode(image, fast=fast, scanlines=scanlines)
    assert not filtered  # nothing filtered again
    assert given == png_encode.encode(image, fast=fast)
    assert np.array_equal(np.asarray(_decode(given)), np.asarray(image))


def test_scanlines_of_another_shape_are_refused() -> None:
    image = _smooth(8, 5)
    right = png_encode.filter_rows(np.asarray(image).reshape(5, 24), 0, 5, 3)
    for wrong in (right[:, 1:], right[1:], right.astype(np.int16), np.zeros((5, 33), np.uint8)):
        with pytest.raises(ValueError, match="do not fit a 8×5 RGB image"):
            png_encode.encode(image, scanlines=wrong)
    assert png_encode.encode(image, scanlines=right[:, :]) == png_encode.encode(image)


def test_text_chunks_are_read_by_pillow() -> None:
    chunks = [png_encode.text_chunk("parameters", "a cat, Steps: 20, café"),
              png_encode.text_chunk("title", "猫"),
              png_encode.text_chunk("json", '{"prompt": "猫"}', compress=True)]
    assert [kind for kind, _ in chunks] == [b"tEXt", b"iTXt", b"iTXt"]
    data = png_encode.encode(_smooth(8, 8), chunks)
    assert [kind for kind, _ in _chunks(data)][:4] == [b"IHDR", b"tEXt", b"iTXt", b"iTXt"]
    assert _decode(data).text == {"parameters": "a cat, Steps: 20, café", "title": "猫",
                                  "json": '{"prompt": "猫"}'}


def test_unsupported_modes_are_refused() -> None:
    assert not png_encode.supports(Image.new("P", (4, 4)))
    with pytest.raises(ValueError, match="I;16"):
        png_encode.encode(Image.new("I;16", (4, 4)))
    with pytest.raises(ValueError, match="empty"):
        png_encode.encode(Image.new("RGB", (0, 3)))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=300), st.integers(0, 70000))
def test_adler32_combine_matches_zlib(first: bytes, second: bytes, repeat: int) -> None:
    second = second * (1 + repeat // 1000)  # long enough to wrap the modulus
    combined = png_encode.adler32_combine(zlib.adler32(first), zlib.adler32(second),
                                          len(second))
    assert combined == zlib.adler32(first + second)
