"""One small handler per resource: parse, ask a pure core, do the I/O, send."""
