/**
 * The `spotpipe` command: dispatches to commands/<name>.ts. One top-level handler turns any error
 * into a one-line message and a non-zero exit (a stack trace only with DEBUG set).
 */
import '../common/polyfill.js'
import { exitOnFatalError, tuneHeapGrowth } from '../common/index.js'
import { SpotpipeError } from '../common/index.js'
import { UsageError } from './errors.js'

interface Command {
  summary: string
  run: (argv: string[]) => Promise<void>
}

const COMMANDS: Record<string, Command> = {
  coordinator: {
    summary: 'assign stages to peers and drive training iterations',
    run: async (argv) => { await (await import('./commands/coordinator.js')).coordinator(argv) }
  },
  keygen: {
    summary: 'write a new peer identity and/or swarm key file',
    run: async (argv) => { await (await import('./commands/keygen.js')).keygen(argv) }
  },
  peer: {
    summary: 'join a cluster and train the stage the coordinator assigns',
    run: async (argv) => { await (await import('./commands/peer.js')).peer(argv) }
  },
  launch: {
    summary: 'write cloud-init user data for spot VM peers and print the cloud CLI command that requests them',
    run: async (argv) => { await (await import('./commands/launch.js')).launch(argv) }
  },
  train: {
    summary: 'train the model locally as an S-stage pipeline in one process',
    run: async (argv) => { await (await import('./commands/train.js')).train(argv) }
  },
  sim: {
    summary: 'simulate stage failures and compare recovery strategies (model mode, projection)',
    run: async (argv) => { await (await import('./commands/sim.js')).sim(argv) }
  },
  status: {
    summary: 'print a snapshot of a running cluster (read-only; --json for a script)',
    run: async (argv) => { await (await import('./commands/status.js')).status(argv) }
  },
  top: {
    summary: 'live view of a running cluster: stages, loss, heartbeats, recovery events',
    run: async (argv) => { await (await import('./commands/top.js')).top(argv) }
  },
  export: {
    summary: 'write a checkpoint as a Hugging Face GPT-2 folder (config, safetensors, tokenizer)',
    run: async (argv) => { await (await import('./commands/export.js')).exportModel(argv) }
  },
  generate: {
    summary: 'sample text from a checkpoint after a prompt',
    run: async (argv) => { await (await import('./commands/generate.js')).generate(argv) }
  },
  eval: {
    summary: 'validation loss and perplexity of a checkpoint on a text file',
    run: async (argv) => { await (await import('./commands/eval.js')).evaluate(argv) }
  }
}

function usage (): string {
  const lines = ['usage: spotpipe <command> [flags]', '', 'commands:']
  for (const [name, c] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(12)} ${c.summary}`)
  lines.push('', 'spotpipe <command> --help shows a command\'s flags.')
  return lines.join('\n')
}

export async function main (argv: string[]): Promise<void> {
  const [name, ...rest] = argv
  try {
    if (name == null || name === '--help' || name === '-h' || name === 'help') {
      process.stdout.write(usage() + '\n')
      return
    }
    const cmd = COMMANDS[name]
    if (cmd == null) throw new UsageError(`unknown command "${name}" (try: ${Object.keys(COMMANDS).join(', ')})`)
    tuneHeapGrowth()
    // a crash still runs the exit hooks that stop the peers a command started (common/fatal-exit.ts)
    exitOnFatalError()
    await cmd.run(rest)
  } catch (err) {
    const e = err as Error
    const code = err instanceof SpotpipeError ? ` [${err.code}]` : ''
    process.stderr.write(`spotpipe: ${e.message.split('\n')[0]}${code}\n`)
    if ((process.env.DEBUG ?? '') !== '' && e.stack != null) process.stderr.write(e.stack + '\n')
    // Exit now: a half-started node or timer must not keep a failed command alive.
    process.exit(err instanceof UsageError ? 2 : 1)
  }
}
