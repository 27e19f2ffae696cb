// Uploads one file with tus-js-client (its Node build) for tests/test_tus_clients.py.
//
//   node tus_upload.mjs --endpoint URL --file PATH [--token T] [--chunk-size N]
//        [--parallel N] [--metadata JSON] [--storage PATH] [--delay-ms N]
//        [--data-during-creation] [--defer-length]
//
// Prints one JSON object per line: {"event":"resume","url"} when a previous
// upload of the file was found in --storage, {"event":"url","url"} once the
// upload URL is known (created or resumed), {"event":"chunk","accepted"}
// after every acknowledged PATCH, then {"event":"success","url"} or
// {"event":"error","message"} (exit 1).
import { createReadStream } from 'node:fs'
import { PassThrough } from 'node:stream'
import { parseArgs } from 'node:util'
import { FileUrlStorage, Upload } from 'tus-js-client'

const { values: args } = parseArgs({
  options: {
    endpoint: { type: 'string' },
    file: { type: 'string' },
    token: { type: 'string' },
    'chunk-size': { type: 'string' },
    parallel: { type: 'string', default: '1' },
    metadata: { type: 'string', default: '{}' },
    storage: { type: 'string' },
    'delay-ms': { type: 'string', default: '0' },
    'data-during-creation': { type: 'boolean', default: false },
    'defer-length': { type: 'boolean', default: false },
  },
})

const print = (event) => process.stdout.write(`${JSON.stringify(event)}\n`)
const delayMs = Number(args['delay-ms'])

const options = {
  endpoint: args.endpoint,
  metadata: JSON.parse(args.metadata),
  headers: args.token ? { Authorization: `Bearer ${args.token}` } : {},
  parallelUploads: Number(args.parallel),
  uploadDataDuringCreation: args['data-during-creation'],
  uploadLengthDeferred: args['defer-length'],
  retryDelays: null,
  removeFingerprintOnSuccess: true,
  // A client-side throttle, so a test can stop the client mid-upload.
  onBeforeRequest: (req) =>
    delayMs > 0 && req.getMethod() === 'PATCH' ? new Promise((resolve) => setTimeout(resolve, delayMs)) : undefined,
  onChunkComplete: (_size, accepted) => print({ event: 'chunk', accepted }),
}
if (args['chunk-size']) options.chunkSize = Number(args['chunk-size'])
if (args.storage) options.urlStorage = new FileUrlStorage(args.storage)

// A deferred length is for data of unknown size: a plain stream. (Given an
// fs.ReadStream, tus-js-client 4.3 reads it by path and its FileSource never
// reports the end, so it never sends Upload-Length.)
const input = args['defer-length'] ? createReadStream(args.file).pipe(new PassThrough()) : createReadStream(args.file)
const upload = new Upload(input, {
  ...options,
  onUploadUrlAvailable: () => print({ event: 'url', url: upload.url }),
  onSuccess: () => print({ event: 'success', url: upload.url }),
  onError: (error) => {
    print({ event: 'error', message: String(error) })
    process.exitCode = 1
  },
})

if (args.storage) {
  const previous = await upload.findPreviousUploads()
  if (previous.length > 0) {
    upload.resumeFromPreviousUpload(previous[0])
    print({ event: 'resume', url: previous[0].uploadUrl })
  }
}
upload.start()
