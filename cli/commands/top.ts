/**
 * `spotpipe top`: a live, read-only view of a cluster. On a terminal it takes the alternate screen
 * and redraws at least once a second and on every event; `q` or Ctrl-C quits and the terminal is
 * restored however it ends. Without a terminal it prints a plain snapshot every second.
 */
import { Observer, OBSERVER_FLAGS, OBSERVER_HELP, observerFromFlags } from '../observer.js'
import { CONFIG_FLAG, CONFIG_HELP, parseFlagsWithConfig } from '../config-file.js'
import { UsageError } from '../errors.js'
import { intFlag } from '../flags.js'
import { renderSnapshot, renderTop } from '../render/screen.js'
import { CLEAR_SCREEN, ENTER_ALT_SCREEN, HIDE_CURSOR, LEAVE_ALT_SCREEN, SHOW_CURSOR, frame } from '../render/terminal.js'

const HELP = `usage: spotpipe top --coordinator MULTIADDR [flags]

A live view of the cluster: stages and their peers, loss, tokens/s, heartbeat ages, and a feed of
churn and recovery events (docs/top.md). Read-only. q or Ctrl-C quits.

${OBSERVER_HELP}  --interval MS        redraw period, 50..1000 (default 1000; events also redraw at once)
${CONFIG_HELP}`

/** Shortest gap between two event-driven redraws. */
const MIN_REDRAW_MS = 100

export async function top (argv: string[]): Promise<void> {
  const { values, positionals } = await parseFlagsWithConfig(argv, {
    ...CONFIG_FLAG,
    ...OBSERVER_FLAGS,
    interval: { type: 'string' },
    help: { type: 'boolean', short: 'h' }
  })
  if (values.help === true) { process.stdout.write(HELP); return }
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}" (spotpipe top takes only flags)`)
  const interval = intFlag(values, 'interval', 1000, 50)
  if (interval > 1000) throw new UsageError(`--interval must be at most 1000 ms (the view redraws at least once a second), got ${interval}`)
  const obs = new Observer(await observerFromFlags(values))
  // connect before touching the terminal: an unreachable coordinator is a plain one-line error
  await obs.start()
  try {
    await (process.stdout.isTTY ? live(obs, interval) : plain(obs, interval))
  } finally {
    await obs.stop()
  }
}

/** Resolves when the user quits: q / Ctrl-C on a terminal stdin, SIGINT, SIGTERM. */
function quitSignal (cleanups: Array<() => void>): Promise<void> {
  return new Promise(resolve => {
    const onSignal = (): void => { resolve() }
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
    cleanups.push(() => { process.off('SIGINT', onSignal); process.off('SIGTERM', onSignal) })
    const stdin = process.stdin
    if (stdin.isTTY) {
      stdin.setRawMode(true)
      const onKey = (b: Buffer): void => {
        const s = b.toString('utf8')
        if (s.includes('q') || s.includes('Q') || s.includes('\x03')) resolve()
      }
      stdin.on('data', onKey)
      stdin.resume()
      cleanups.push(() => {
        stdin.off('data', onKey)
        stdin.setRawMode(false)
        stdin.pause()
      })
    }
  })
}

async function live (obs: Observer, interval: number): Promise<void> {
  const out = process.stdout
  const cleanups: Array<() => void> = []
  let restored = false
  const restore = (): void => {
    if (restored) return
    restored = true
    out.write(SHOW_CURSOR + LEAVE_ALT_SCREEN)
  }
  // last resort if the process ends some other way
  process.once('exit', restore)
  cleanups.push(() => { process.off('exit', restore) })
  out.write(ENTER_ALT_SCREEN + HIDE_CURSOR + CLEAR_SCREEN)
  try {
    await new Promise<void>((resolve, reject) => {
      let last = 0
      let pending: NodeJS.Timeout | undefined
      const draw = (): void => {
        if (pending != null) { clearTimeout(pending); pending = undefined }
        last = Date.now()
        try {
          out.write(frame(renderTop(obs.view(), out.columns ?? 80, out.rows ?? 24)))
        } catch (err) {
          reject(err)
        }
      }
      // redraw on events, but not more often than MIN_REDRAW_MS
      const onChange = (): void => {
        if (pending != null) return
        pending = setTimeout(draw, Math.max(0, MIN_REDRAW_MS - (Date.now() - last)))
      }
      // a resize may leave old characters where the new layout has none
      const onResize = (): void => { out.write(CLEAR_SCREEN); draw() }
      const timer = setInterval(draw, interval)
      obs.on('change', onChange)
      out.on('resize', onResize)
      cleanups.push(() => {
        clearInterval(timer)
        if (pending != null) clearTimeout(pending)
        obs.off('change', onChange)
        out.off('resize', onResize)
      })
      draw()
      quitSignal(cleanups).then(resolve, reject)
    })
  } finally {
    for (const c of cleanups.reverse()) c()
    restore()
  }
}

async function plain (obs: Observer, interval: number): Promise<void> {
  const out = process.stdout
  const cleanups: Array<() => void> = []
  try {
    await new Promise<void>((resolve, reject) => {
      const print = (): void => {
        try {
          out.write(renderSnapshot(obs.view(), out.columns ?? 100, 'spotpipe top').join('\n') + '\n\n')
        } catch (err) {
          reject(err)
        }
      }
      // a closed pipe (`spotpipe top | head`) ends the command quietly
      const onError = (): void => { resolve() }
      out.on('error', onError)
      const timer = setInterval(print, interval)
      cleanups.push(() => { clearInterval(timer); out.off('error', onError) })
      quitSignal(cleanups).then(resolve, reject)
    })
  } finally {
    for (const c of cleanups.reverse()) c()
  }
}
