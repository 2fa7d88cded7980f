/**
 * `npm run chaos -- --minutes M --seed K [--fault-every S] [--replicas R] [--spares N] [--swarm-key FILE] [--heartbeat-timeout MS] [--dir DIR]`: the
 * long soak of the chaos suite (sim/chaos). A coordinator, 4 stage peers and 2 spares as real
 * processes train a tiny model while faults drawn from the enum (singles, pairs, faults during a
 * recovery) hit them at least every S seconds (default 10); the fleet restarts or replaces peers as a
 * spot fleet would. It prints each fault as it happens, then every invariant with its violations, and
 * ends with the figures as bench lines. The baseline is the same cluster before the first fault: its
 * median iteration time is printed before the faults start. With `--replicas R` (default 1) the
 * fleet runs 4 stages x R peers plus the spares, the coordinator with --replicas R, and the
 * schedule adds replica faults (one replica of a stage, every replica at once, a drift).
 */
import '../common/polyfill.js'
import { parseArgs } from 'node:util'
import { exitOnFatalError } from '../common/index.js'
import { ChaosConfigError, benchLines, checkInvariants, formatReport, runChaos } from '../sim/chaos/index.js'

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    seed: { type: 'string', default: '1' },
    'fault-every': { type: 'string', default: '10' },
    replicas: { type: 'string', default: '1' },
    spares: { type: 'string', default: '2' },
    'swarm-key': { type: 'string' },
    'heartbeat-timeout': { type: 'string' },
    dir: { type: 'string' }
  },
  strict: true
})

function num (name: string, raw: string | undefined, min: number): number {
  const v = Number(raw)
  if (!Number.isFinite(v) || v < min) {
    process.stderr.write(`chaos: --${name} must be a number >= ${min}, got "${String(raw)}"\n`)
    process.exit(2)
  }
  return v
}

// Ctrl-C or a kill runs the exit handlers, which kill the fleet (without these, a SIGTERMed soak
// left its seven peers and the coordinator running)
process.once('SIGINT', () => { process.exit(130) })
process.once('SIGTERM', () => { process.exit(143) })
exitOnFatalError() // and so does a crash (common/fatal-exit.ts)

const minutes = num('minutes', values.minutes, 0.1)
const seed = num('seed', values.seed, 0)
const every = num('fault-every', values['fault-every'], 1)
const replicas = num('replicas', values.replicas, 1)
const spares = num('spares', values.spares, 0)
const t0 = Date.now()
const log = (line: string): void => { process.stdout.write(`${line}\n`) }
log(`chaos: ${minutes} min, seed ${seed}, a fault at least every ${every} s${replicas > 1 ? `, ${replicas} replicas per stage` : ''}`)
const history = await runChaos({
  seed,
  durationMs: minutes * 60_000,
  faultEveryMs: every * 1000,
  replicas,
  spares,
  swarmKeyFile: values['swarm-key'],
  heartbeatTimeoutMs: values['heartbeat-timeout'] != null ? num('heartbeat-timeout', values['heartbeat-timeout'], 100) : undefined,
  dir: values.dir,
  log
}).catch((err: unknown) => {
  if (err instanceof ChaosConfigError) {
    process.stderr.write(`chaos: ${err.message} [${err.code}]\n`)
    process.exit(2)
  }
  throw err
})
const report = checkInvariants(history)
for (const l of formatReport(history, report)) log(l)
log(`chaos: done in ${((Date.now() - t0) / 1000).toFixed(0)} s`)
for (const l of benchLines(report)) log(l)
