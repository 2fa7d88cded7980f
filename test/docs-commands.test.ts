/**
 * The command lines the README and docs/*.md show are commands the CLI runs. Every line in a code
 * block (fenced or indented) that starts with `spotpipe ` or `npx spotpipe ` is found; those that
 * can run here and quickly (`--help`, `keygen`, `launch`) are run, each code block in a fresh
 * temporary folder, in order; every other one must be listed in NOT_LOCAL with the reason it cannot
 * run here, so a new command line in the docs is either run or consciously classified. And
 * `--help` of every command works.
 */
import { execFile } from 'node:child_process'
import { promises as fs } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { generateSwarmKey, saveSwarmKey } from '../net/index.js'
import { ROOT, killAll, spotpipe } from './helpers/procs.js'

const run = promisify(execFile)

const NEEDS_CLUSTER = 'needs a running coordinator and cluster to talk to'
const RUNS_A_NODE = 'starts a node that runs until it is stopped'
const NEEDS_CHECKPOINT = 'needs a checkpoint written by a training run'
const SYNOPSIS = 'a synopsis with placeholders, not a command line'
const SCREEN = 'a line of the screen top draws, not a command'
const TRAINS = 'trains a model for minutes (test/training.test.ts and test/data.test.ts train small ones)'

/** Command lines shown in the docs that cannot run here, each with the reason (the text as shown, comments dropped). */
const NOT_LOCAL: Record<string, string> = {
  'npx spotpipe sim': 'the churn demo: five strategies on real clusters for minutes (test/sim-cluster.test.ts runs a small one)',
  'npx spotpipe sim --preset paper-500m --report --out out/paper-500m': 'the paper reproduction: 37 model-mode runs, 15-30 minutes (test/sim-paper.test.ts runs a shrunk one)',
  'npx spotpipe coordinator --stages 4 --listen /ip4/127.0.0.1/tcp/9000 --identity coord.key --create-identity': RUNS_A_NODE,
  'npx spotpipe peer --coordinator /ip4/127.0.0.1/tcp/9000/p2p/12D3KooW... --swarm-key swarm.key': NEEDS_CLUSTER,
  'npx spotpipe export --checkpoint state/ --out gpt2-bytes/': NEEDS_CHECKPOINT,
  'npx spotpipe generate --checkpoint state/ --prompt "The jury said " --tokens 200 --temperature 0.8 --top-k 40 --seed 1': NEEDS_CHECKPOINT,
  'npx spotpipe eval --checkpoint state/ --data held-out.txt': NEEDS_CHECKPOINT,
  'spotpipe train --data ./corpus --tokenizer gpt2': TRAINS,
  'spotpipe train --data ./dump.jsonl.gz --data-field body --tokenizer hf:./my-tokenizer/tokenizer.json': TRAINS,
  'spotpipe train --tokenizer gpt2': TRAINS,
  'spotpipe coordinator --data ./corpus --tokenizer gpt2 ...': SYNOPSIS,
  'spotpipe peer --coordinator ADDR --data ./corpus --tokenizer gpt2 ...': SYNOPSIS,
  'spotpipe export --checkpoint DIR --out DIR [--force]': SYNOPSIS,
  'spotpipe generate --checkpoint DIR --prompt TEXT [--tokens N] [--temperature T] [--top-k K] [--seed S] [--backend NAME]': SYNOPSIS,
  'spotpipe eval --checkpoint DIR --data PATH [--backend NAME]': SYNOPSIS,
  'spotpipe coordinator --identity coordinator.key --swarm-key swarm.key --cluster run-7 --listen /ip4/0.0.0.0/tcp/4001 --stages 4': RUNS_A_NODE,
  'spotpipe peer --coordinator /ip4/10.0.0.5/tcp/4001/p2p/12D3KooWJ5kU... --cluster run-7 --swarm-key swarm.key --identity peer.key --create-identity --listen /ip4/0.0.0.0/tcp/4001': NEEDS_CLUSTER,
  'spotpipe top --coordinator /ip4/10.0.0.5/tcp/4001/p2p/12D3KooW... --cluster run-7 --swarm-key swarm.key': NEEDS_CLUSTER,
  'spotpipe status --coordinator /ip4/10.0.0.5/tcp/4001/p2p/12D3KooW... --cluster run-7 --swarm-key swarm.key --json': NEEDS_CLUSTER,
  'spotpipe top epoch 2 iter 22 loss 4.049 tok/s 153 cluster run-7 4 stages, 1 spare coordinator …Jh2kQx q quits': SCREEN,
  'spotpipe top epoch 3 iter 41 at risk: 2 loss 3.880 tok/s 612 cluster run-7 3 stages, 0 spares coordinator …Jh2kQx q quits': SCREEN
}

interface DocCommand {
  /** Where it is shown: file:line. */
  where: string
  /** Which code block of that file (commands of one block share a folder). */
  block: string
  /** The command as shown, continuations joined, whitespace collapsed, a trailing comment dropped. */
  text: string
}

/** The spotpipe command lines in the code blocks of one markdown file. */
function docCommands (markdown: string, file: string): DocCommand[] {
  const lines = markdown.split('\n')
  const out: DocCommand[] = []
  let fenced = false
  let indented = false
  let block = 0
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]
    if (/^\s*```/.test(line)) {
      fenced = !fenced
      block++
      continue
    }
    if (!fenced) {
      // an indented code block starts after a blank line and goes on while lines are indented or blank
      const code = /^( {4}|\t)/.test(line)
      if (code && !indented && (i === 0 || lines[i - 1].trim() === '')) { indented = true; block++ }
      if (!code && line.trim() !== '') indented = false
      if (!indented || !code) continue
    }
    const at = i
    let text = line.trim()
    while (text.endsWith('\\') && i + 1 < lines.length) text = text.slice(0, -1) + ' ' + lines[++i].trim()
    for (const part of text.split('&&')) {
      const cmd = dropComment(part).replace(/\s+/g, ' ').trim()
      if (cmd.startsWith('spotpipe ') || cmd.startsWith('npx spotpipe ')) out.push({ where: `${file}:${at + 1}`, block: `${file}#${block}`, text: cmd })
    }
  }
  return out
}

/** The text before an unquoted ` #`. */
function dropComment (s: string): string {
  let quote = ''
  for (let i = 0; i < s.length; i++) {
    const c = s[i]
    if (quote !== '') { if (c === quote) quote = ''; continue }
    if (c === '"' || c === "'") quote = c
    else if (c === '#' && (i === 0 || /\s/.test(s[i - 1]))) return s.slice(0, i)
  }
  return s
}

/** The words bash makes of a command line (quotes and all). */
async function shellWords (text: string): Promise<string[]> {
  const { stdout } = await run('bash', ['-c', 'eval "set -- $SPOTPIPE_LINE"; printf \'%s\\0\' "$@"'], { env: { ...process.env, SPOTPIPE_LINE: text } })
  return stdout.split('\0').slice(0, -1)
}

/** How a command line shown in the docs is checked here. */
function classify (words: string[]): 'help' | 'keygen' | 'launch' | undefined {
  if (words.includes('--help') || words.includes('-h')) return 'help'
  if (words[0] === 'keygen' || words[0] === 'launch') return words[0]
  return undefined
}

interface Ran { code: number | null, stdout: string, stderr: string }

async function runIn (cwd: string, args: string[]): Promise<Ran> {
  const p = spotpipe(args, { DEBUG: '' }, cwd)
  const { code } = await p.exited
  return { code, stdout: p.lines.join('\n'), stderr: p.stderr.join('\n') }
}

let all: DocCommand[] = []
const dirs: string[] = []
beforeAll(async () => {
  const files = ['README.md', ...(await fs.readdir(join(ROOT, 'docs'))).filter(f => f.endsWith('.md')).sort().map(f => `docs/${f}`)]
  for (const f of files) all.push(...docCommands(await fs.readFile(join(ROOT, f), 'utf8'), f))
})
afterEach(async () => { await killAll() })
afterAll(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }) })

describe('the command lines in the README and docs', () => {
  it('finds them (both code block kinds, continuations joined)', () => {
    expect(docCommands('text\n\n    npm ci && npx spotpipe sim --help\n\n```sh\nspotpipe keygen \\\n  --swarm-key k  # a comment\n```\n', 'x.md'))
      .toEqual([{ where: 'x.md:3', block: 'x.md#1', text: 'npx spotpipe sim --help' }, { where: 'x.md:6', block: 'x.md#2', text: 'spotpipe keygen --swarm-key k' }])
    expect(all.length).toBeGreaterThan(10)
  })

  it('each is run here or listed with the reason it cannot be', async () => {
    const unclassified: string[] = []
    for (const c of all) {
      if (NOT_LOCAL[c.text] != null) continue
      const words = (await shellWords(c.text)).slice(c.text.startsWith('npx ') ? 2 : 1)
      if (classify(words) == null) unclassified.push(`${c.where}: ${c.text}`)
    }
    expect(unclassified, 'run these in this test, or add them to NOT_LOCAL with the reason they cannot run here').toEqual([])
    const stale = Object.keys(NOT_LOCAL).filter(t => !all.some(c => c.text === t))
    expect(stale, 'no longer in the docs: remove them from NOT_LOCAL').toEqual([])
  })

  it('those that can run here succeed (each code block in a fresh folder)', async () => {
    const blocks = new Map<string, DocCommand[]>()
    for (const c of all) if (NOT_LOCAL[c.text] == null) blocks.set(c.block, [...(blocks.get(c.block) ?? []), c])
    let ran = 0
    for (const cmds of blocks.values()) {
      const dir = await mkdtemp(join(tmpdir(), 'spotpipe-docs-'))
      dirs.push(dir)
      for (const c of cmds) {
        const words = (await shellWords(c.text)).slice(c.text.startsWith('npx ') ? 2 : 1)
        const kind = classify(words)
        if (kind == null) continue // unclassified: the test above names it
        if (kind === 'launch') {
          // the secret is an input the operator already has; make one where the example expects it
          const k = words.indexOf('--swarm-key')
          const key = k >= 0 ? join(dir, words[k + 1]) : undefined
          if (key != null && await fs.access(key).then(() => false, () => true)) await saveSwarmKey(key, generateSwarmKey())
        }
        const r = await runIn(dir, words)
        expect(r.code, `${c.where}: ${c.text}\n${r.stderr}`).toBe(0)
        if (kind === 'help') expect(r.stdout, c.where).toMatch(/^usage: spotpipe /)
        if (kind === 'launch') {
          const out = words.includes('--out') ? words[words.indexOf('--out') + 1] : 'spotpipe-launch'
          expect((await fs.readFile(join(dir, out, 'user-data.yaml'), 'utf8')).startsWith('#cloud-config\n'), c.where).toBe(true)
        }
        ran++
      }
    }
    expect(ran).toBeGreaterThanOrEqual(5)
  }, 120_000)

  it('--help of every command prints its usage', async () => {
    const top = await runIn(ROOT, ['--help'])
    expect(top.code).toBe(0)
    const commands = [...top.stdout.matchAll(/^ {2}([a-z]+) {2,}/gm)].map(m => m[1])
    expect(commands).toEqual(expect.arrayContaining(['coordinator', 'peer', 'keygen', 'launch', 'status', 'top']))
    const check = async (name: string): Promise<void> => {
      const r = await runIn(ROOT, [name, '--help'])
      expect(r.code, `${name} --help: ${r.stderr}`).toBe(0)
      expect(r.stdout, name).toMatch(new RegExp(`^usage: spotpipe ${name}\\b`))
    }
    for (let i = 0; i < commands.length; i += 4) await Promise.all(commands.slice(i, i + 4).map(check))
  }, 120_000)
})

