"""A request body read as `multipart/form-data`: the exchange's bytes fed to
the sans-I/O parser, parser errors translated into the error tree.

Owns: the boundary where `MultipartError` enters (400, or 413 for a limit),
415 for another media type, and the one-file-part body of a chunk PUT. Must
not: decide where parts go.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..protocol.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, XferError
from ..protocol.multipart import (
    Event,
    MultipartError,
    MultipartLimitError,
    MultipartParser,
    PartData,
    PartStart,
    parse_boundary,
)
from .exchange import Exchange


def is_form_data(ex: Exchange) -> bool:
    return ex.headers.get("content-type", "").split(";", 1)[0].strip().lower() == "multipart/form-data"


def _translate(exc: MultipartError) -> XferError:
    if isinstance(exc, MultipartLimitError):
        return PayloadTooLarge(f"multipart body: {exc}")
    return BadRequest(f"malformed multipart body: {exc}")


async def iter_events(ex: Exchange, raw: AsyncIterator[bytes]) -> AsyncIterator[Event]:
    """Parser events for the body chunks of `raw` (the caller may count or
    hash them on the way); raises on a truncated or malformed body."""
    if not is_form_data(ex):
        raise UnsupportedMediaType("expected multipart/form-data")
    try:
        parser = MultipartParser(parse_boundary(ex.headers["content-type"]))
    except MultipartError as exc:
        raise _translate(exc) from None
    async for chunk in raw:
        try:
            events = parser.feed(chunk)
        except MultipartError as exc:
            raise _translate(exc) from None
        for event in events:
            yield event
    try:
        parser.close()
    except MultipartError as exc:
        raise _translate(exc) from None


async def single_file_data(ex: Exchange) -> AsyncIterator[bytes]:
    """The data of the one file part of a multipart body (a chunk sent as a
    form upload, as browsers' FormData do); fields are skipped."""
    seen_file = False
    current_is_file = False
    async for event in iter_events(ex, ex.iter_body()):
        if isinstance(event, PartStart):
            current_is_file = event.filename is not None
            if current_is_file:
                if seen_file:
                    raise BadRequest("expected exactly one file part")
                seen_file = True
        elif isinstance(event, PartData) and current_is_file:
            yield event.data
    if not seen_file:
        raise BadRequest("expected one file part in the multipart body")
