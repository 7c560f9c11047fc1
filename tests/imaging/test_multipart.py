"""The STOW-RS body reader: parts come out byte for byte whatever the read sizes, bad bodies are refused, and
the read-ahead thread hands parts over in order and cleans up after a consumer that stops early."""

import os
import random
import threading

import pytest

from core.streams import read_ahead
from imaging.dicomweb.multipart import MultipartError, closing, frame_part, read_parts

BOUNDARY = "b0undary-okapi"
CTYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


class Trickle:
    """A body stream that answers each read with at most ``step`` bytes (as sockets do)."""

    def __init__(self, data: bytes, step: int):
        self.data, self.step, self.pos = data, step, 0

    def read(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + min(n, self.step)]
        self.pos += len(out)
        return out


def body(parts: list[bytes], preamble: bytes = b"") -> bytes:
    return preamble + b"".join(frame_part(p, BOUNDARY, "application/dicom") for p in parts) + closing(BOUNDARY)


def parse(data: bytes, step: int, tmp_path, max_part_bytes: int = 10**9):
    counter = iter(range(10**6))

    def temp_file():
        path = tmp_path / f"part{next(counter)}"
        return os.open(path, os.O_WRONLY | os.O_CREAT), str(path)

    out = []
    for part in read_parts(Trickle(data, step), CTYPE, temp_file=temp_file, max_part_bytes=max_part_bytes):
        out.append((part.error, None if part.path is None else open(part.path, "rb").read()))
    return out


def test_parts_come_out_whole_whatever_the_read_sizes(tmp_path):
    rng = random.Random(3)
    delimiter = b"\r\n--" + BOUNDARY.encode()
    parts = [rng.randbytes(n) for n in (0, 1, 17, 3000, 70_000)]
    parts.append(delimiter[:-1] + b"x" + delimiter[1:-3])  # almost a delimiter, twice, but not quite
    parts.append(b"\r\n--" + b"\r\n" * 40)
    data = body(parts, preamble=b"\r\nignored preamble\r\n")
    for step in (1, 2, 7, len(delimiter) - 1, len(delimiter), 64, 4096, 1 << 20):
        assert parse(data, step, tmp_path) == [("", p) for p in parts], step


def test_an_oversized_part_is_dropped_and_the_rest_kept(tmp_path):
    parts = [b"a" * 10, b"b" * 5000, b"c" * 20]
    got = parse(body(parts), 333, tmp_path, max_part_bytes=100)
    assert got[0] == ("", b"a" * 10) and got[2] == ("", b"c" * 20)
    assert got[1][1] is None and "over the limit" in got[1][0]


@pytest.mark.parametrize("data, message", [
    (b"no boundary here at all", "no multipart boundary"),
    (body([b"x" * 100])[:-30], "ended inside a part"),
    (body([b"x" * 100])[:60], "headers are malformed or never end"),
])  # fmt: skip
def test_bad_bodies_are_refused_with_the_reason(tmp_path, data, message):
    with pytest.raises(MultipartError, match=message):
        parse(data, 5, tmp_path)
    assert not any(tmp_path.iterdir())  # no half-written part left behind


def test_read_ahead_keeps_order_raises_in_place_and_discards_what_was_not_taken():
    assert list(read_ahead(iter(range(50)), depth=3, discard=lambda _: None)) == list(range(50))

    def failing():
        yield 1
        yield 2
        raise MultipartError("broken body")

    got = []
    with pytest.raises(MultipartError, match="broken body"):
        for item in read_ahead(failing(), depth=4, discard=lambda _: None):
            got.append(item)
    assert got == [1, 2]

    made, discarded, taken = [], [], []
    produced_enough = threading.Event()

    def producer():
        for i in range(100):
            made.append(i)
            if len(made) >= 5:
                produced_enough.set()
            yield i

    reader = read_ahead(producer(), depth=3, discard=discarded.append)
    taken.append(next(reader))
    produced_enough.wait(5)
    reader.close()  # the consumer stops early
    assert taken == [0]
    assert sorted(taken + discarded) == made  # everything made was taken or discarded, nothing leaked
    assert len(made) < 100
