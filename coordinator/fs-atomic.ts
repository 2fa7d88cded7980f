/**
 * Crash-safe file replacement: the bytes go to a temporary file next to the target, are fsynced,
 * and the temporary file is renamed over the target, then the directory is fsynced so the rename
 * itself survives a power loss. A reader therefore sees either the old file or the new one, never
 * a mix. A crash can leave the temporary file behind; `removeStaleTemps` clears those.
 */
import { randomBytes } from 'node:crypto'
import { promises as fs } from 'node:fs'
import { basename, dirname, join } from 'node:path'

export interface WriteFileAtomicOptions {
  /** Permission bits of the file, applied exactly (the umask does not narrow them). @default 0o666 narrowed by the umask */
  mode?: number
  /** Aborting before the rename removes the temporary file and leaves the target untouched. */
  signal?: AbortSignal
}

const TEMP_SUFFIX = '.tmp'

/** Temporary name for `path`: `.<name>.<pid>.<random>.tmp` in the same directory (rename must not cross filesystems). */
function tempPathFor (path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`)
}

/** True if `name` (a base name) looks like a temporary file of writeFileAtomic, of `target` when given. */
export function isAtomicTemp (name: string, target?: string): boolean {
  if (!name.startsWith('.') || !name.endsWith(TEMP_SUFFIX)) return false
  // .<target>.<pid>.<12 hex>.tmp
  const m = /^\.(.+)\.\d+\.[0-9a-f]{12}\.tmp$/.exec(name)
  if (m == null) return false
  return target === undefined || m[1] === target
}

/**
 * Replaces `path` with `data` atomically. The parent directory must exist. Strings are written as
 * UTF-8; an array of buffers is written back to back (one writev, no joined copy). On any failure
 * (or abort) the temporary file is removed and the old content stays.
 */
export async function writeFileAtomic (path: string, data: Uint8Array | string | readonly Uint8Array[], opts: WriteFileAtomicOptions = {}): Promise<void> {
  const { signal, mode } = opts
  signal?.throwIfAborted()
  const parts = typeof data === 'string' ? [Buffer.from(data, 'utf8')] : data instanceof Uint8Array ? [data] : data
  const tmp = tempPathFor(path)
  const fh = await fs.open(tmp, 'wx', mode ?? 0o666)
  let placed = false
  try {
    try {
      if (mode !== undefined) await fh.chmod(mode)
      await writeAll(fh, parts, signal)
      await fh.sync()
    } finally {
      await fh.close()
    }
    signal?.throwIfAborted()
    await fs.rename(tmp, path)
    placed = true
  } finally {
    if (!placed) await fs.rm(tmp, { force: true })
  }
  await fsyncDir(dirname(path))
}

/** Writes every part in order from the start of the file, however the kernel splits the writes. */
async function writeAll (fh: fs.FileHandle, parts: readonly Uint8Array[], signal?: AbortSignal): Promise<void> {
  let left = parts.filter(p => p.byteLength > 0)
  let position = 0
  while (left.length > 0) {
    signal?.throwIfAborted()
    const { bytesWritten } = await fh.writev(left, position)
    position += bytesWritten
    // drop what was written; a part written in part continues from where it stopped
    let n = bytesWritten
    while (left.length > 0 && n >= left[0].byteLength) { n -= left[0].byteLength; left = left.slice(1) }
    if (n > 0) left = [left[0].subarray(n), ...left.slice(1)]
  }
}

/** fsyncs a directory so renames and unlinks in it are durable. Best effort: not every platform allows it. */
export async function fsyncDir (dir: string): Promise<void> {
  let fh: fs.FileHandle | undefined
  try {
    fh = await fs.open(dir, 'r')
    await fh.sync()
  } catch {} finally {
    await fh?.close().catch(() => {})
  }
}

/**
 * Deletes temporary files that a crashed writeFileAtomic left next to `path`. Only safe when no
 * other process is writing `path` at the same time. Returns the names removed.
 */
export async function removeStaleTemps (path: string): Promise<string[]> {
  const dir = dirname(path)
  const target = basename(path)
  let names: string[]
  try {
    names = await fs.readdir(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  const stale = names.filter(n => isAtomicTemp(n, target))
  for (const n of stale) await fs.rm(join(dir, n), { force: true })
  return stale
}
