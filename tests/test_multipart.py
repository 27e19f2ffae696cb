"""The incremental multipart/form-data parser, fed as real clients send bodies.

Expected parts come from what was handed to the client (tests/corpus/multipart/
expected.json, written by generate.py), from the RFC text, or from
python-multipart as an oracle, never from our own output. Every body is fed
whole, one byte at a time, at every two-way split and in seeded random pieces.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
import python_multipart
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_xfer.protocol.multipart import (
    MAX_BOUNDARY_BYTES,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_PARTS,
    Event,
    MultipartError,
    MultipartLimitError,
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
    parse_boundary,
)

CORPUS = Path(__file__).parent / "corpus" / "multipart"
EXPECTED = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
CORPUS_NAMES = sorted(EXPECTED)


@dataclass
class Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def collect(events: list[Event]) -> list[Part]:
    """Assemble events into parts, checking they come as Start, Data*, End."""
    parts: list[Part] = []
    open_part = False
    for event in events:
        if isinstance(event, PartStart):
            assert not open_part
            parts.append(Part(event.name, event.filename, event.content_type, b""))
            open_part = True
        elif isinstance(event, PartData):
            assert open_part and event.data and type(event.data) is bytes
            parts[-1].data += event.data
        else:
            assert isinstance(event, PartEnd) and open_part
            open_part = False
    assert not open_part
    return parts


def parse(boundary: bytes, pieces: list[bytes], **limits: int) -> list[Part]:
    parser = MultipartParser(boundary, **limits)
    events: list[Event] = []
    for piece in pieces:
        events += parser.feed(piece)
    parser.close()
    return collect(events)


def load(name: str) -> tuple[bytes, bytes]:
    """The boundary (from the request's own Content-Type) and body of a corpus file."""
    head, body = (CORPUS / name).read_bytes().split(b"\r\n\r\n", 1)
    for line in head.split(b"\r\n")[1:]:
        field, _, value = line.partition(b":")
        if field.lower() == b"content-type":
            return parse_boundary(value.decode().strip()), body
    raise AssertionError(f"{name} has no Content-Type")


def expected_parts(name: str) -> list[Part]:
    return [
        Part(p["name"], p["filename"], p["content_type"], base64.b64decode(p["data_b64"]))
        for p in EXPECTED[name]
    ]


def random_pieces(body: bytes, seed: int, largest: int = 64) -> list[bytes]:
    rng = random.Random(seed)
    pieces, pos = [], 0
    while pos < len(body):
        size = rng.choice((0, 1, 2, 3, rng.randint(1, largest)))
        pieces.append(body[pos : pos + size])
        pos += size
    return pieces


FEEDS = {
    "whole": lambda body: [body],
    "bytewise": lambda body: [body[i : i + 1] for i in range(len(body))],
    **{f"random-{seed}": (lambda body, seed=seed: random_pieces(body, seed)) for seed in range(6)},
}


def test_corpus_is_complete() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.http")) == CORPUS_NAMES


@pytest.mark.parametrize("feed", list(FEEDS))
@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_corpus_bodies(name: str, feed: str) -> None:
    boundary, body = load(name)
    assert parse(boundary, FEEDS[feed](body)) == expected_parts(name)


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_corpus_every_two_way_split(name: str) -> None:
    boundary, body = load(name)
    expected = expected_parts(name)
    for split in range(len(body) + 1):
        assert parse(boundary, [body[:split], body[split:]]) == expected, split


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_corpus_truncated_bodies_fail(name: str) -> None:
    boundary, body = load(name)
    complete = body.index(b"\r\n--" + boundary + b"--") + len(boundary) + 6
    for end in range(len(body) + 1):
        parser = MultipartParser(boundary)
        if end < complete:
            with pytest.raises(MultipartError):
                parser.feed(body[:end])
                parser.close()
        else:
            parser.feed(body[:end])
            parser.close()


def python_multipart_parts(boundary: bytes, body: bytes) -> list[tuple[list[tuple[bytes, bytes]], bytes]]:
    """Parts as (raw headers, data) according to python-multipart."""
    parts: list[tuple[list[tuple[bytes, bytes]], bytes]] = []
    field, value = b"", b""

    def on_part_begin() -> None:
        parts.append(([], b""))

    def on_header_field(data: bytes, start: int, end: int) -> None:
        nonlocal field
        field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        nonlocal value
        value += data[start:end]

    def on_header_end() -> None:
        nonlocal field, value
        parts[-1][0].append((field.lower(), value))
        field, value = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1] = (parts[-1][0], parts[-1][1] + data[start:end])

    parser = python_multipart.MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
        },
    )
    parser.write(body)
    parser.finalize()
    return parts


# python-multipart does not skip a preamble; the RFC body has one.
@pytest.mark.parametrize("name", [n for n in CORPUS_NAMES if not n.startswith("rfc2046")])
def test_corpus_agrees_with_python_multipart(name: str) -> None:
    boundary, body = load(name)
    parser = MultipartParser(boundary)
    events = parser.feed(body)
    parser.close()
    ours, data = [], b""
    for event in events:
        if isinstance(event, PartStart):
            headers = [(key.encode(), value.encode()) for key, value in event.headers]
        elif isinstance(event, PartData):
            data += event.data
        else:
            ours.append((headers, data))
            data = b""
    assert ours == python_multipart_parts(boundary, body)


def test_a_whole_piece_of_data_is_not_copied() -> None:
    parser = MultipartParser(b"b")
    parser.feed(b'--b\r\nContent-Disposition: form-data; name="f"\r\n\r\n')
    piece = b"x" * 100_000
    assert parser.feed(piece)[0].data is piece


def test_data_ending_like_a_delimiter_is_held_until_settled() -> None:
    parser = MultipartParser(b"b")
    parser.feed(b'--b\r\nContent-Disposition: form-data; name="f"\r\n\r\n')
    piece = b"abc\r\n-"
    assert parser.feed(piece) == []
    assert parser.feed(b"x") == [PartData(piece), PartData(b"x")]
    assert parser.feed(b"\r\n--b--") == [PartEnd()]


# --- parse_boundary ----------------------------------------------------------

B70 = "a" * 70


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        ("multipart/form-data; boundary=abc", b"abc"),
        ("Multipart/Form-Data; BOUNDARY=abc", b"abc"),
        ('multipart/form-data; boundary="simple boundary"', b"simple boundary"),  # RFC 2046 §5.1.1
        ("multipart/form-data;boundary=----WebKitFormBoundaryrGKCBY7qhFd3TrwA", b"----WebKitFormBoundaryrGKCBY7qhFd3TrwA"),
        ("multipart/form-data; charset=utf-8; boundary=x", b"x"),
        ("multipart/form-data; boundary=x;", b"x"),
        ("multipart/form-data; boundary=\"'()+_,-./:=?\"", b"'()+_,-./:=?"),
        (f"multipart/form-data; boundary={B70}", B70.encode()),
    ],
)
def test_parse_boundary(content_type: str, boundary: bytes) -> None:
    assert parse_boundary(content_type) == boundary


@pytest.mark.parametrize(
    "content_type",
    [
        "",
        "text/plain; boundary=abc",
        "multipart/mixed; boundary=abc",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        'multipart/form-data; boundary=""',
        f"multipart/form-data; boundary={B70}a",  # 71 > MAX_BOUNDARY_BYTES
        'multipart/form-data; boundary="ends with space "',  # bcharsnospace
        "multipart/form-data; boundary=a@b",  # @ is no bchar
        'multipart/form-data; boundary="caf\u00e9"',
        "multipart/form-data; boundary=a; boundary=b",
        "multipart/form-data; boundary=a b",
    ],
)
def test_parse_boundary_rejects(content_type: str) -> None:
    with pytest.raises(MultipartError):
        parse_boundary(content_type)


def test_boundary_limit_is_rfc_2046() -> None:
    assert MAX_BOUNDARY_BYTES == 70
    with pytest.raises(MultipartError):
        MultipartParser(b"a" * 71)
    with pytest.raises(MultipartError):
        MultipartParser(b"")


# --- part headers --------------------------------------------------------------


def one_part(*header_lines: bytes, data: bytes = b"x") -> bytes:
    return b"--b\r\n" + b"".join(line + b"\r\n" for line in header_lines) + b"\r\n" + data + b"\r\n--b--\r\n"


def start_of(body: bytes) -> PartStart:
    parser = MultipartParser(b"b")
    events = parser.feed(body)
    parser.close()
    assert isinstance(events[0], PartStart)
    return events[0]


@pytest.mark.parametrize(
    ("disposition", "name", "filename"),
    [
        (b'form-data; name="field"', "field", None),
        (b"form-data; name=field", "field", None),
        (b'FORM-DATA ; NAME = "f" ; FILENAME = "a.txt" ;', "f", "a.txt"),
        (b'form-data; name=""; filename=""', "", ""),
        # Browsers, curl and undici percent-encode ", CR and LF (RFC 7578 §4.2).
        (b'form-data; name="a%22b"; filename="%22q%22%0D%0A.txt"', 'a"b', '"q"\r\n.txt'),
        (b'form-data; name="f"; filename="100%25 %41.txt"', "f", "100%25 %41.txt"),
        # curl --form-escape and RFC 9110 quoted-pair.
        (b'form-data; name="a\\"b"; filename="c\\\\d"', 'a"b', "c\\d"),
        (b'form-data; name="f"; filename="C:\\Users\\me\\a.txt"', "f", "C:\\Users\\me\\a.txt"),
        # Raw UTF-8, as browsers send it.
        ('form-data; name="naïve"; filename="résumé.pdf"'.encode(), "naïve", "résumé.pdf"),
        # Not UTF-8: read as ISO-8859-1.
        (b'form-data; name="f"; filename="r\xe9sum\xe9.pdf"', "f", "résumé.pdf"),
        # RFC 8187 §3.2.2 examples; filename* wins over filename (RFC 6266 §4.3).
        (b"form-data; name=f; filename*=iso-8859-1'en'%A3%20rates", "f", "£ rates"),
        (b"form-data; name=f; filename*=UTF-8''%c2%a3%20and%20%e2%82%ac%20rates", "f", "£ and € rates"),
        (b"form-data; name=f; filename=\"EURO rates\"; filename*=utf-8''%e2%82%ac%20rates", "f", "€ rates"),
        (b"form-data; name=f; filename*=utf-8''%e2%82%ac%20rates; filename=\"EURO rates\"", "f", "€ rates"),
        (b"form-data; name=f; filename*=\"UTF-8''a%20b\"", "f", "a b"),
    ],
)
def test_content_disposition(disposition: bytes, name: str, filename: str | None) -> None:
    start = start_of(one_part(b"Content-Disposition: " + disposition))
    assert (start.name, start.filename) == (name, filename)


def test_part_headers_are_case_insensitive_and_kept_in_order() -> None:
    start = start_of(
        one_part(
            b'content-DISPOSITION:form-data; name="f"; filename="a.bin"',
            b"CONTENT-TYPE:   application/x-thing; v=1   ",
            b"X-Extra: \t yes",
        )
    )
    assert start.content_type == "application/x-thing; v=1"
    assert start.headers == (
        ("content-disposition", 'form-data; name="f"; filename="a.bin"'),
        ("content-type", "application/x-thing; v=1"),
        ("x-extra", "yes"),
    )


def test_folded_header_lines_are_joined() -> None:
    start = start_of(one_part(b"Content-Disposition: form-data;", b'  name="f";', b'\tfilename="a.txt"'))
    assert (start.name, start.filename) == ("f", "a.txt")


@pytest.mark.parametrize("encoding", [b"binary", b"8bit", b"7BIT"])
def test_identity_transfer_encodings_pass(encoding: bytes) -> None:
    body = one_part(b'Content-Disposition: form-data; name="f"', b"Content-Transfer-Encoding: " + encoding)
    assert parse(b"b", [body]) == [Part("f", None, None, b"x")]


MALFORMED = {
    "no headers": b"--b\r\n\r\nx\r\n--b--",
    "no disposition": one_part(b"Content-Type: text/plain"),
    "not form-data": one_part(b'Content-Disposition: attachment; name="f"'),
    "no name": one_part(b'Content-Disposition: form-data; filename="a"'),
    "two dispositions": one_part(b"Content-Disposition: form-data; name=a", b"Content-Disposition: form-data; name=b"),
    "two content types": one_part(b"Content-Disposition: form-data; name=a", b"Content-Type: a/b", b"Content-Type: c/d"),
    "repeated parameter": one_part(b"Content-Disposition: form-data; name=a; name=b"),
    "unterminated quote": one_part(b'Content-Disposition: form-data; name="a'),
    "junk parameter": one_part(b"Content-Disposition: form-data; name=a; junk"),
    "space in token": one_part(b"Content-Disposition: form-data; name=a b"),
    "header without colon": one_part(b"Content-Disposition: form-data; name=a", b"oops"),
    "bad header name": one_part(b"Content Disposition: form-data; name=a"),
    "starts with fold": b"--b\r\n continued\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--b--",
    "control char": one_part(b"Content-Disposition: form-data; name=\"a\x00\""),
    "bare CR in header": one_part(b"Content-Disposition: form-data; name=a\rX-A: b"),
    "bare LF in header": one_part(b"Content-Disposition: form-data; name=a\nX-A: b"),
    "LF-only body": b"--b\nContent-Disposition: form-data; name=a\n\nx\n--b--\n",
    "garbage after delimiter": b"--bX\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--b--",
    "one dash after delimiter": b"--b-\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--b--",
    "base64 transfer encoding": one_part(b"Content-Disposition: form-data; name=a", b"Content-Transfer-Encoding: base64"),
    "filename* without quotes": one_part(b"Content-Disposition: form-data; name=a; filename*=a.txt"),
    "filename* unknown charset": one_part(b"Content-Disposition: form-data; name=a; filename*=koi8-r''%C1"),
    "filename* bad utf-8": one_part(b"Content-Disposition: form-data; name=a; filename*=utf-8''%FF"),
    "filename* bad escape": one_part(b"Content-Disposition: form-data; name=a; filename*=utf-8''%G1"),
    "empty body": b"",
    "no delimiter": b"just some text\r\n",
    "delimiter never closed": one_part(b"Content-Disposition: form-data; name=a")[:-9],
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_bodies(name: str) -> None:
    body = MALFORMED[name]
    for pieces in ([body], [body[i : i + 1] for i in range(len(body))]):
        parser = MultipartParser(b"b")
        with pytest.raises(MultipartError) as caught:
            for piece in pieces:
                parser.feed(piece)
            parser.close()
        assert type(caught.value) is MultipartError


# --- framing -------------------------------------------------------------------

FIELD = b"Content-Disposition: form-data; name=a\r\n\r\n"


@pytest.mark.parametrize(
    ("body", "data"),
    [
        (b"--b\r\n" + FIELD + b"x\r\n--b--", [b"x"]),  # no CRLF after the close
        (b"--b\r\n" + FIELD + b"x\r\n--b--\r\nepilogue --b\r\n" + FIELD, [b"x"]),
        (b"--b--garbage", []),  # the epilogue is not looked at
        (b"--b--\r\n", []),  # a form without fields
        (b"preamble\r\n--b\r\n" + FIELD + b"x\r\n--b--", [b"x"]),
        (b"x--b\r\n--b\r\n" + FIELD + b"x\r\n--b--", [b"x"]),  # "--b" inside the preamble's line
        (b"\r\n--b\r\n" + FIELD + b"x\r\n--b--", [b"x"]),  # empty preamble line
        (b"--b \t \r\n" + FIELD + b"x\r\n--b\t\r\n" + FIELD + b"y\r\n--b--", [b"x", b"y"]),  # padding
        (b"--b\r\n" + FIELD + b"--b\r\n--b--", [b"--b"]),  # no CRLF before it: data
        (b"--b\r\n" + FIELD + b"\r\n--b--", [b""]),
        (b"--b\r\n" + FIELD + b"\r\n\r\n--b--", [b"\r\n"]),
        (b"--b\r\n" + FIELD + b"\r\n--c\r\n--\r\n--b--", [b"\r\n--c\r\n--"]),
    ],
)
def test_framing(body: bytes, data: list[bytes]) -> None:
    for split in range(len(body) + 1):
        parts = parse(b"b", [body[:split], body[split:]])
        assert [part.data for part in parts] == data


def test_failed_parser_stays_failed() -> None:
    parser = MultipartParser(b"b")
    with pytest.raises(MultipartError):
        parser.feed(b"--bXY")
    with pytest.raises(MultipartError):
        parser.feed(b"\r\n")
    with pytest.raises(MultipartError):
        parser.close()


def test_closed_parser() -> None:
    parser = MultipartParser(b"b")
    parser.feed(b"--b--")
    parser.close()
    parser.close()
    with pytest.raises(MultipartError):
        parser.feed(b"more")


# --- limits --------------------------------------------------------------------


def test_limits_have_their_documented_values() -> None:
    assert (MAX_HEADER_BYTES, MAX_HEADERS, MAX_PARTS) == (16 * 1024, 16, 1000)


def fields(count: int) -> bytes:
    return b"".join(b"--b\r\n" + FIELD + b"v\r\n" for _ in range(count)) + b"--b--"


def test_part_limit() -> None:
    assert len(parse(b"b", [fields(5)], max_parts=5)) == 5
    with pytest.raises(MultipartLimitError):
        parse(b"b", [fields(6)], max_parts=5)
    assert len(parse(b"b", [fields(MAX_PARTS)])) == MAX_PARTS
    with pytest.raises(MultipartLimitError):
        parse(b"b", [fields(MAX_PARTS + 1)])


def test_header_count_limit() -> None:
    lines = [b"Content-Disposition: form-data; name=a"] + [b"X-N: v"] * 3
    assert parse(b"b", [one_part(*lines)], max_headers=4)
    with pytest.raises(MultipartLimitError):
        parse(b"b", [one_part(*lines, b"X-N: v")], max_headers=4)
    with pytest.raises(MultipartLimitError):
        parse(b"b", [one_part(*lines + [b"X-N: v"] * MAX_HEADERS)])


@pytest.mark.parametrize("bytewise", [False, True])
def test_header_bytes_limit(bytewise: bool) -> None:
    def body(header_bytes: int) -> bytes:
        # The header block runs from after "--b" to before the blank line.
        fill = b"X-Fill: " + b"f" * (header_bytes - 50)
        block = b"\r\n" + b"Content-Disposition: form-data; name=a\r\n" + fill
        assert len(block) == header_bytes
        return b"--b" + block + b"\r\n\r\nx\r\n--b--"

    def pieces(data: bytes) -> list[bytes]:
        return [data[i : i + 1] for i in range(len(data))] if bytewise else [data]

    assert parse(b"b", pieces(body(300)), max_header_bytes=300)
    with pytest.raises(MultipartLimitError):
        parse(b"b", pieces(body(301)), max_header_bytes=300)
    assert parse(b"b", pieces(body(MAX_HEADER_BYTES)))
    with pytest.raises(MultipartLimitError):
        parse(b"b", pieces(body(MAX_HEADER_BYTES + 1)))


def test_header_limit_fails_before_the_blank_line_arrives() -> None:
    parser = MultipartParser(b"b", max_header_bytes=100)
    parser.feed(b"--b\r\nContent-Disposition: form-data; name=a\r\n")
    with pytest.raises(MultipartLimitError):
        parser.feed(b"X-Fill: " + b"f" * 100)


# --- fuzzing -------------------------------------------------------------------


def split_by(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(min_value=0), max_size=8))
def test_arbitrary_bytes_raise_only_multipart_error(data: bytes, cuts: list[int]) -> None:
    for body in (data, b"--b\r\n" + data, b"--b\r\n" + FIELD + data, b"--b\r\n" + FIELD + data + b"\r\n--b--"):
        parser = MultipartParser(b"b", max_header_bytes=64, max_headers=3, max_parts=3)
        try:
            for piece in split_by(body, cuts):
                parser.feed(piece)
            parser.close()
        except MultipartError:
            pass


NEAR = st.sampled_from([b"\r", b"\n", b"-", b"--", b"\r\n", b"\r\n-", b"\r\n--", b"b", b"bo", b"bou", b"x", b" "])


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([b"bou", b"b o", b"----WebKitFormBoundaryrGKCBY7qhFd3TrwA"]),
    st.lists(
        st.tuples(
            st.text(st.characters(exclude_categories=["Cs", "Cc"], exclude_characters='\\%', include_characters="\t\r\n"), max_size=8),
            st.none() | st.text(st.characters(exclude_categories=["Cs", "Cc"], exclude_characters="\\%", include_characters="\t\r\n"), max_size=8),
            st.lists(NEAR | st.binary(max_size=4), max_size=30).map(b"".join),
        ),
        max_size=4,
    ),
    st.lists(st.integers(min_value=0), max_size=10),
)
def test_encoded_parts_round_trip(boundary: bytes, parts: list[tuple[str, str | None, bytes]], cuts: list[int]) -> None:
    delimiter = b"\r\n--" + boundary
    body = b"preamble"
    for name, filename, data in parts:
        # A delimiter may not occur in the data (RFC 2046 §5.1.1).
        if (data + delimiter).find(delimiter) != len(data):
            return
        disposition = b'form-data; name="' + whatwg_escape(name) + b'"'
        if filename is not None:
            disposition += b'; filename="' + whatwg_escape(filename) + b'"'
        body += delimiter + b"\r\nContent-Disposition: " + disposition + b"\r\n\r\n" + data
    body += delimiter + b"--\r\n"
    expected = [Part(name, filename, None, data) for name, filename, data in parts]
    assert parse(boundary, split_by(body, cuts)) == expected


def whatwg_escape(value: str) -> bytes:
    """Encode a name as the HTML standard has browsers do."""
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A").encode()
