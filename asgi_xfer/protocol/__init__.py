"""The pure protocol cores: bytes and values in, values out.

Ranges and multipart/byteranges (RFC 9110 §14), conditional requests (§13),
the representation a GET gets, Content-Disposition, path checks, digests
(RFC 9530), the incremental multipart/form-data parser, chunked-session and
tus rules, zip and tar writers, the gzip codec, link signing, access
decisions, rate limiting, a resumable SHA-256, and the one error tree that
carries SPEC's status and code.

Must not: do I/O (no files, sockets, asyncio) or import anything of ours
outside this package; tests/test_layers.py holds it to that.
"""
