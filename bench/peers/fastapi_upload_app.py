"""Peer: the usual FastAPI upload, ``POST /files/{dir}/`` into ``$BENCH_ROOT``.

An ``UploadFile`` parameter (Starlette spools the part to a temporary file
while parsing) copied to its destination with ``shutil.copyfileobj``: the
pattern the FastAPI docs and most tutorials show. A plain ``def`` endpoint,
so the copy runs in the threadpool. No fsync, as the pattern is written; it
must not be "fixed" here. ``GET /healthz`` is only for the harness.
"""

from __future__ import annotations

import os
import shutil

from fastapi import FastAPI, File, HTTPException, UploadFile

ROOT = os.path.realpath(os.environ["BENCH_ROOT"])

app = FastAPI()


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/files/{directory:path}", status_code=201)
def upload(directory: str, f: UploadFile = File(...)) -> dict[str, object]:
    target_dir = os.path.realpath(os.path.join(ROOT, directory))
    name = os.path.basename(f.filename or "upload.bin")
    if not (target_dir == ROOT or target_dir.startswith(ROOT + os.sep)) or not name:
        raise HTTPException(status_code=400)
    os.makedirs(target_dir, exist_ok=True)
    with open(os.path.join(target_dir, name), "wb") as out:
        shutil.copyfileobj(f.file, out)
    return {"name": name, "size": os.path.getsize(os.path.join(target_dir, name))}
