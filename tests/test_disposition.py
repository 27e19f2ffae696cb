"""Content-Disposition against RFC 6266 / RFC 8187 examples and the stdlib."""

from __future__ import annotations

import email

import pytest

from asgi_xfer.protocol.disposition import format_content_disposition, parse_content_disposition


def stdlib_ext_filename(value: str) -> str | None:
    """Oracle: the stdlib email package decoding our ``filename*`` alone.

    RFC 8187 ext-values are RFC 2231 extended parameters without
    continuations, which ``email`` decodes. (It does not prefer
    ``filename*`` over ``filename``, so it is shown only the former.)
    """
    ext = value[value.index("filename*=") :]
    message = email.message_from_string(f"Content-Disposition: attachment; {ext}\n\n")
    return message.get_filename()


@pytest.mark.parametrize(
    ("filename", "fallback", "encoded"),
    [
        # UTF-8 of 测 试 文 件 is E6B58B E8AF95 E69687 E4BBB6.
        ("测试 文件.txt", "__ __.txt", "%E6%B5%8B%E8%AF%95%20%E6%96%87%E4%BB%B6.txt"),
        # RFC 6266 §5: "€ rates" is %e2%82%ac%20rates.
        ("€ rates", "_ rates", "%E2%82%AC%20rates"),
        # RFC 8187 §3.2.2: "£ rates" in UTF-8.
        ("£ rates", "_ rates", "%C2%A3%20rates"),
        ("report.pdf", "report.pdf", "report.pdf"),
        # RFC 8187 §3.2.1 attr-char is sent as is; everything else is %XX.
        ("a!#$&+-.^_`|~z", "a!#$&+-.^_`|~z", "a!#$&+-.^_`|~z"),
        ("100%;(x)=*'.txt", "100%;(x)=*'.txt", "100%25%3B%28x%29%3D%2A%27.txt"),
        # RFC 9110 §5.6.4 quoted-pair for DQUOTE and backslash.
        ('say "hi"\\.txt', 'say \\"hi\\"\\\\.txt', "say%20%22hi%22%5C.txt"),
        # Control characters never reach the quoted-string.
        ("a\x01b\x7fc\td", "a_b_c_d", "a%01b%7Fc%09d"),
    ],
)
def test_format(filename: str, fallback: str, encoded: str) -> None:
    expected = f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
    value = format_content_disposition(filename)
    assert value == expected
    assert stdlib_ext_filename(value) == filename


def test_format_inline() -> None:
    value = format_content_disposition("a.txt", inline=True)
    assert value == "inline; filename=\"a.txt\"; filename*=UTF-8''a.txt"


def test_format_output_is_a_latin1_safe_header() -> None:
    value = format_content_disposition("測試\r\nX-Injected: 1.txt")
    assert value.isascii()
    assert "\r" not in value and "\n" not in value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # RFC 6266 §5 examples.
        ("Attachment; filename=example.html", ("attachment", {"filename": "example.html"})),
        ('INLINE; FILENAME= "an example.html"', ("inline", {"filename": "an example.html"})),
        ("attachment; filename*= UTF-8''%e2%82%ac%20rates", ("attachment", {"filename": "€ rates"})),
        (
            "attachment; filename=\"EURO rates\"; filename*=utf-8''%e2%82%ac%20rates",
            ("attachment", {"filename": "€ rates"}),
        ),
        # filename* is preferred whatever the order (RFC 6266 §4.3).
        (
            "attachment; filename*=utf-8''%e2%82%ac%20rates; filename=\"EURO rates\"",
            ("attachment", {"filename": "€ rates"}),
        ),
        # RFC 8187 §3.2.2 examples (on a filename parameter).
        ("attachment; filename*=iso-8859-1'en'%A3%20rates", ("attachment", {"filename": "£ rates"})),
        (
            "attachment; filename*=UTF-8''%c2%a3%20and%20%e2%82%ac%20rates",
            ("attachment", {"filename": "£ and € rates"}),
        ),
        # An ext-value that cannot be decoded is ignored, not guessed at.
        ("attachment; filename=\"x\"; filename*=KOI8-R''%C1", ("attachment", {"filename": "x"})),
        ("attachment; filename=\"x\"; filename*=UTF-8''%FF", ("attachment", {"filename": "x"})),
        ("attachment; filename=\"x\"; filename*=UTF-8''a b", ("attachment", {"filename": "x"})),
        ("attachment; filename=\"x\"; filename*=UTF-8''%G1", ("attachment", {"filename": "x"})),
        ("attachment; filename=\"x\"; filename*=%e2%82%ac", ("attachment", {"filename": "x"})),
        # quoted-string unescaping and separators inside quotes.
        ('attachment; filename="a\\"b\\\\c.txt"', ("attachment", {"filename": 'a"b\\c.txt'})),
        ('form-data; name="file"; filename="a;b=c.txt"', ("form-data", {"name": "file", "filename": "a;b=c.txt"})),
        ('form-data; name="upload"', ("form-data", {"name": "upload"})),
        ("attachment", ("attachment", {})),
        ("  Attachment  ", ("attachment", {})),
        ("attachment;", ("attachment", {})),
        ("attachment; junk; filename=a.txt", ("attachment", {"filename": "a.txt"})),
        ('attachment; filename="unterminated', ("attachment", {"filename": "unterminated"})),
        # §4.1 forbids repeats; the first one is kept.
        ("attachment; filename=a.txt; filename=b.txt", ("attachment", {"filename": "a.txt"})),
        ("attachment; Name = value ; X=\"y\"", ("attachment", {"name": "value", "x": "y"})),
    ],
)
def test_parse(value: str, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_content_disposition(value) == expected


@pytest.mark.parametrize(
    "filename",
    ["测试 文件.txt", 'q"uo\\te.txt', "100% sure;=.txt", "tab\there", "ç.txt", "plain.bin", " lead and trail "],
)
def test_format_then_parse_round_trips(filename: str) -> None:
    disposition, params = parse_content_disposition(format_content_disposition(filename))
    assert disposition == "attachment"
    assert params["filename"] == filename
