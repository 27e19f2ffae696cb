"""One small module per resource: `/files/` (download, upload, form),
`/uploads` (chunked), `/tus/` (tus), `/archive/` (archive, archivebody),
and the operational routes (ops)."""
