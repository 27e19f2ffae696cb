"""The ASGI server: the one place that speaks ASGI, and a handler per resource.

`exchange` is the only module that talks to `receive`/`send`; `app` holds
the route table, access checks and the error boundary; `handlers/` joins
parse -> protocol decision -> storage -> send for each resource; `config`
reads settings; `serve` is `asgi-xfer serve` on uvicorn, with the send
extensions of `uvicornpathsend`.

May import `protocol`, `storage`, and `client` (to reach peer nodes).
"""
