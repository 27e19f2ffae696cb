"""Storage: where file bytes and server state live, behind two small contracts.

- `tree.FilesTree`: the files tree (open for read, list, stage and commit,
  delete, free space), implemented on local disk by `disktree` (openat2,
  sendfile-ready fds), with `staging`, `filestream`, `filelocks`,
  `beneath` and `archivesource` doing its I/O;
- `state.StateBackend`: upload sessions with compare-and-set, the content
  index, the CRC cache and the signing key, implemented in SQLite by
  `sqlite/`;
- what works across both for upload sessions: `committer` (staging space,
  commit, instant upload, sweeping), `hashfeed` and `sessionhash` (the
  running whole-file SHA-256), `filehash`.

May import `protocol`; must not import `server` or `client`.
"""
