import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { freshBuild } from '../sim/peer-process.js'

const root = mkdtempSync(join(tmpdir(), 'spotpipe-build-'))
afterAll(() => { rmSync(root, { recursive: true, force: true }) })

describe('the processes tests start run the build only when it is fresh (sim/peer-process.ts)', () => {
  it('is fresh when the entry is at least as new as every source, stale after a source changes or without a build', () => {
    mkdirSync(join(root, 'model', 'tokenizers'), { recursive: true })
    mkdirSync(join(root, 'dist', 'cli'), { recursive: true })
    const src = join(root, 'model', 'tokenizers', 'a.ts')
    const entry = join(root, 'dist', 'cli', 'main-entry.js')
    writeFileSync(src, '')
    writeFileSync(join(root, 'model', 'notes.md'), '')
    expect(freshBuild(root, entry, ['model'])).toBe(false) // no build yet
    writeFileSync(entry, '')
    utimesSync(src, 1000, 1000)
    utimesSync(entry, 2000, 2000)
    expect(freshBuild(root, entry, ['model'])).toBe(true)
    utimesSync(join(root, 'model', 'notes.md'), 3000, 3000) // not a source: no matter
    expect(freshBuild(root, entry, ['model'])).toBe(true)
    utimesSync(src, 3000, 3000) // edited after the build (in a subfolder)
    expect(freshBuild(root, entry, ['model'])).toBe(false)
  })
})
