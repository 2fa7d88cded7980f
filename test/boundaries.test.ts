/**
 * The folder rule (README "What is here"): imports flow one way, and a folder's index.ts is its
 * whole public surface. This parses every .ts file of the source folders (static `import`/`export
 * ... from`, side-effect `import '...'`, dynamic `import('...')` and `import('...')` types) and fails
 * naming the file and the import when
 *   (a) an import goes upward or sideways against LAYERS, or
 *   (b) a file imports a file of another folder other than that folder's index.ts.
 * bench/ and test/ sit on top and may import anything, internals included (tests test internals);
 * they are not checked, but nothing below may import them.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'
import { describe, expect, it } from 'vitest'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

/**
 * Lower layers first; a folder may import only from folders of a lower layer, and folders of one
 * layer do not import each other.
 *   common        errors, logging, the Node 20 polyfill, process tuning: what every layer shares
 *   protocols     wire formats and codecs (no networking)
 *   model         stages, tokenizer, data, state, recovery arithmetic
 *   net           libp2p node creation, framed streams, identity and swarm-key files, the weights
 *                 protocol's server and client, cluster gossip, the /metrics server: the networking
 *                 that both the peer and the coordinator run on
 *   node          the peer
 *   coordinator   membership, assignment, detection, recovery, checkpoints
 *   sim           simulation (runs coordinators and peers)
 *   cli           the `spotpipe` command
 */
const LAYERS: string[][] = [
  ['common'],
  ['protocols', 'model'],
  ['net'],
  ['node', 'coordinator'],
  ['sim'],
  ['cli']
]
/** On top of everything; may import any folder and any file. */
const TOP = ['bench', 'test']

/**
 * Imports of another folder's file other than its index.ts that are allowed, by target path
 * (relative to the repository) and only as a side-effect import (`import '...'`, no names).
 */
const SIDE_EFFECT_FILES: Record<string, string> = {
  // Promise.withResolvers for Node 20: entry points import it as their first line so it runs before
  // libp2p loads. A bare import adds nothing to the folder's surface; going through common/index.js
  // would hide that the import is there for its evaluation order.
  'common/polyfill.ts': 'must be evaluated first in every entry point'
}

/**
 * Imports of another folder's file other than its index.ts that are allowed, as 'from-folder ->
 * file' (relative to the repository), in any form.
 */
const ALLOWED_FILES: Record<string, string> = {
  // The recovery ladder is a pure function (it imports model/ and protocols/ only), and sim/ runs it
  // on simulated failures in every model-mode worker process. coordinator/index.js also loads the
  // Coordinator, hence libp2p and net/: measured on the build, importing sim/model-mode.js (what a
  // worker loads) took 0.9 s through coordinator/index.js and 0.4 s through ladder.js.
  'sim -> coordinator/ladder.ts': 'a pure planner; the coordinator index would load libp2p into every sim worker'
}

/** Upward or sideways imports that are allowed, as 'from-folder -> to-folder' with the reason. None today. */
const ALLOWED_EDGES: Record<string, string> = {}

const SOURCE = LAYERS.flat()
const rank = new Map<string, number>()
LAYERS.forEach((folders, i) => { for (const f of folders) rank.set(f, i) })
for (const f of TOP) rank.set(f, LAYERS.length)

function tsFiles (dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out.push(...tsFiles(p))
    else if (name.endsWith('.ts')) out.push(p)
  }
  return out
}

interface Import { specifier: string, line: number, sideEffectOnly: boolean }

/** Every module specifier a file names: static imports and re-exports, dynamic imports, import types. */
function importsOf (fileName: string, text: string): Import[] {
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS)
  const out: Import[] = []
  const add = (lit: ts.Node, sideEffectOnly: boolean): void => {
    if (!ts.isStringLiteralLike(lit)) return
    out.push({ specifier: lit.text, line: sf.getLineAndCharacterOfPosition(lit.getStart(sf)).line + 1, sideEffectOnly })
  }
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) add(node.moduleSpecifier, node.importClause == null)
    else if (ts.isExportDeclaration(node) && node.moduleSpecifier != null) add(node.moduleSpecifier, false)
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) add(node.moduleReference.expression, false)
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments.length > 0) add(node.arguments[0], false)
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) add(node.argument.literal, false)
    ts.forEachChild(node, visit)
  }
  visit(sf)
  return out
}

/** The rule's violations in `files` (paths relative to ROOT, '/'-separated, with their text). */
function violations (files: Array<{ path: string, text: string }>): string[] {
  const found: string[] = []
  for (const { path, text } of files) {
    const from = path.split('/')[0]
    for (const imp of importsOf(path, text)) {
      if (!imp.specifier.startsWith('.')) continue
      const target = relative(ROOT, resolve(ROOT, dirname(path), imp.specifier)).split(sep).join('/').replace(/\.js$/, '.ts')
      const to = target.split('/')[0]
      if (to === from) continue
      const where = `${path}:${imp.line} imports '${imp.specifier}'`
      const toRank = rank.get(to)
      const edge = `${from} -> ${to}`
      if (toRank === undefined) {
        found.push(`${where}: ${to}/ is not a source folder`)
        continue
      }
      if (toRank >= (rank.get(from) as number) && !(edge in ALLOWED_EDGES)) {
        found.push(`${where}: ${toRank === rank.get(from) ? 'sideways' : 'upward'} (${edge}; layers: ${LAYERS.map(l => l.join(', ')).join(' < ')})`)
      }
      if (target !== `${to}/index.ts` && !(imp.sideEffectOnly && target in SIDE_EFFECT_FILES) && !(`${from} -> ${target}` in ALLOWED_FILES)) {
        found.push(`${where}: not ${to}/index.ts (a folder's index.ts is its public surface)`)
      }
    }
  }
  return found
}

function sourceFiles (): Array<{ path: string, text: string }> {
  return SOURCE.filter(f => { try { return statSync(join(ROOT, f)).isDirectory() } catch { return false } })
    .flatMap(f => tsFiles(join(ROOT, f)))
    .map(p => ({ path: relative(ROOT, p).split(sep).join('/'), text: readFileSync(p, 'utf8') }))
}

describe('folder boundaries', () => {
  it('every source folder exists', () => {
    for (const f of SOURCE) expect(statSync(join(ROOT, f)).isDirectory(), `${f}/`).toBe(true)
  })

  it('imports flow one way and go through index.ts', () => {
    const files = sourceFiles()
    expect(files.length).toBeGreaterThan(100)
    expect(violations(files)).toEqual([])
  })

  it('catches what it is meant to catch', () => {
    const v = violations([
      { path: 'protocols/x.ts', text: "import { a } from '../model/index.js'" },
      { path: 'model/x.ts', text: "export { a } from '../node/index.js'" },
      { path: 'coordinator/x.ts', text: "import type { A } from '../node/index.js'" },
      { path: 'node/x.ts', text: "const m = await import('../model/stage.js')\nimport '../common/polyfill.js'" },
      { path: 'sim/x.ts', text: "import { b } from '../common/polyfill.js'\nlet t: import('../coordinator/detector.js').T" },
      { path: 'cli/x.ts', text: "import { h } from '../test/helpers/procs.js'\nimport { s } from '../sim/index.js'" },
      { path: 'sim/y.ts', text: "import { planRecovery } from '../coordinator/ladder.js'" },
      { path: 'cli/y.ts', text: "import { planRecovery } from '../coordinator/ladder.js'" }
    ])
    expect(v).toEqual([
      expect.stringMatching(/^protocols\/x\.ts:1 imports '\.\.\/model\/index\.js': sideways/),
      expect.stringMatching(/^model\/x\.ts:1 imports '\.\.\/node\/index\.js': upward/),
      expect.stringMatching(/^coordinator\/x\.ts:1 imports '\.\.\/node\/index\.js': sideways/),
      expect.stringMatching(/^node\/x\.ts:1 imports '\.\.\/model\/stage\.js': not model\/index\.ts/),
      expect.stringMatching(/^sim\/x\.ts:1 imports '\.\.\/common\/polyfill\.js': not common\/index\.ts/),
      expect.stringMatching(/^sim\/x\.ts:2 imports '\.\.\/coordinator\/detector\.js': not coordinator\/index\.ts/),
      expect.stringMatching(/^cli\/x\.ts:1 imports '\.\.\/test\/helpers\/procs\.js': upward/),
      expect.stringMatching(/^cli\/x\.ts:1 imports '\.\.\/test\/helpers\/procs\.js': not test\/index\.ts/),
      expect.stringMatching(/^cli\/y\.ts:1 imports '\.\.\/coordinator\/ladder\.js': not coordinator\/index\.ts/)
    ])
  })
})
