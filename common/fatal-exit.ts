/**
 * Process tuning for entry points that start child processes (the CLI, the benchmarks, the chaos
 * soak): a fatal error ends the process through `process.exit`, so its 'exit' listeners run, and
 * those are what kill the peers, probes and donors it started.
 *
 * Without it a crash left them running. tfjs's WASM backend (its emscripten glue, installed when
 * the backend starts) adds an 'uncaughtException' listener that rethrows and an
 * 'unhandledRejection' listener that throws. An error thrown inside such a listener ends Node at
 * once with exit code 7 and no 'exit' event: bench:costmodel died that way inside the backend's
 * handler and left four peer processes behind. This listener is prepended, so it runs before
 * the backend's whatever the order they were added in.
 *
 * Only for entry points: a library or a test worker keeps Node's (or vitest's) own handling.
 */

let installed = false

/** Exit code of a process ended by an uncaught error, as Node's own default. */
const FATAL_EXIT_CODE = 1

export function exitOnFatalError (): void {
  if (installed) return
  installed = true
  process.prependListener('uncaughtException', (err: unknown, origin: string) => {
    const what = origin === 'unhandledRejection' ? 'unhandled rejection' : 'uncaught exception'
    const text = err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : String(err)
    process.stderr.write(`${what}: ${text}\n`)
    process.exit(FATAL_EXIT_CODE)
  })
}
