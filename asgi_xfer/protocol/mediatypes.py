"""Media types of request bodies: which Content-Type a JSON body may carry.

Owns: reading the type/subtype of a Content-Type value (RFC 9110 §8.3.1) and
the rule for JSON request bodies. Must not: read bodies or raise HTTP errors;
the server decides what a wrong type costs (415).
"""

from __future__ import annotations


def parse_essence(value: str | None) -> str | None:
    """`type/subtype`, lowercased (§8.3.1: case-insensitive), without
    parameters; None when absent or not of that shape."""
    if value is None:
        return None
    essence = value.split(";", 1)[0].strip().lower()
    kind, slash, subtype = essence.partition("/")
    if not slash or not kind or not subtype or " " in essence:
        return None
    return essence


def is_json(value: str | None) -> bool:
    """`application/json` or a `+json` structured syntax suffix (RFC 6839 §3.1).

    A JSON request sent as text/plain or as a form (curl's `-d` default) is
    refused: a browser may send those cross-site without a CORS preflight
    (Fetch "CORS-safelisted request-header"), so accepting them would let a
    page on another site open upload sessions or sign links with a cookie or
    a cached credential.
    """
    essence = parse_essence(value)
    return essence is not None and (essence == "application/json" or
                                    (essence.startswith("application/") and essence.endswith("+json")))
