/**
 * Child process of test/fatal-exit.test.ts: starts tfjs's WASM backend (whose emscripten glue adds
 * the rethrowing error listeners), starts a grandchild it kills in an 'exit' listener, as the CLI
 * and the benchmarks kill their peers, prints the grandchild's pid, and dies of an uncaught error.
 * argv: <throw|reject> <guarded|unguarded>: unguarded leaves out exitOnFatalError (the control).
 */
import '../../common/polyfill.js'
import { spawn } from 'node:child_process'
import { exitOnFatalError } from '../../common/index.js'
import { initBackend } from '../../model/index.js'

const [how, guard] = process.argv.slice(2)
await initBackend({ backend: 'wasm', strict: true })
// after the backend, on purpose: the listener must run first whatever the order
if (guard === 'guarded') exitOnFatalError()
const grandchild = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' })
process.on('exit', () => { grandchild.kill('SIGKILL') })
process.stdout.write(`grandchild ${String(grandchild.pid)}\n`)
setTimeout(() => {
  if (how === 'reject') void Promise.reject(new Error('boom (rejected)'))
  else throw new Error('boom (thrown)')
}, 100)
