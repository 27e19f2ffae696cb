// Uploads one file with Uppy (@uppy/core + @uppy/tus) under Node, for
// tests/test_tus_clients.py.
//
//   node uppy_upload.mjs ENDPOINT FILE TOKEN NAME CHUNK_SIZE
//
// Prints {"successful": [upload URLs], "failed": [messages]}.
//
// Uppy hands tus-js-client a Blob (as in a browser); tus-js-client's Node
// build reads only Buffers and streams, so this gives it a Blob reader —
// the same slicing its browser build does.
import { readFileSync } from 'node:fs'
import Uppy from '@uppy/core'
import Tus from '@uppy/tus'

class BlobSource {
  constructor(blob) {
    this.blob = blob
    this.size = blob.size
  }

  async slice(start, end) {
    const value = Buffer.from(await this.blob.slice(start, end).arrayBuffer())
    value.size = value.length // tus-js-client reads .size
    return { value, done: end >= this.size }
  }

  close() {}
}

const [endpoint, path, token, name, chunkSize] = process.argv.slice(2)
const uppy = new Uppy({ autoProceed: false })
uppy.use(Tus, {
  endpoint,
  headers: { Authorization: `Bearer ${token}` },
  chunkSize: Number(chunkSize),
  retryDelays: null,
  fileReader: { openFile: async (input) => new BlobSource(input) },
})
uppy.addFile({ name, type: 'application/octet-stream', data: new Blob([readFileSync(path)]) })
const result = await uppy.upload()
process.stdout.write(`${JSON.stringify({
  successful: result.successful.map((f) => f.tus?.uploadUrl ?? f.uploadURL),
  failed: result.failed.map((f) => String(f.error)),
})}\n`)
