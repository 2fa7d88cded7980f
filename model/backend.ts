/**
 * Picks the tfjs compute backend. Order: an installed tfjs-node-gpu / tfjs-node (never a dependency:
 * their install downloads libtensorflow, which spot VMs behind a closed network cannot reach), then
 * WASM (SIMD, single-threaded: ~30x faster than `cpu` here), then the pure-JS `cpu` backend.
 * `SPOTPIPE_BACKEND` or an explicit argument overrides the order; a requested backend that fails to
 * load falls back to the next one with a logged reason, unless `strict` is set.
 */
import * as tf from '@tensorflow/tfjs'
import { BackendError } from '../common/index.js'
import { createLog } from '../common/index.js'

const log = createLog('backend')

export type BackendName = 'tensorflow' | 'wasm' | 'cpu'
export const BACKENDS: readonly BackendName[] = ['tensorflow', 'wasm', 'cpu']

/** Loads a native TensorFlow binding if the user installed one; the GPU build is preferred. */
async function loadNative (): Promise<void> {
  const errors: string[] = []
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      // A variable specifier keeps TypeScript and bundlers from resolving an optional package.
      const spec: string = pkg
      await import(spec)
      if (await tf.setBackend('tensorflow')) return
      errors.push(`${pkg}: setBackend('tensorflow') returned false`)
    } catch (err) {
      errors.push(`${pkg}: ${(err as Error).message.split('\n')[0]}`)
    }
  }
  throw new BackendError(`no native TensorFlow binding loads (${errors.join('; ')})`)
}

async function loadWasm (): Promise<void> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm')
  // tfjs 4.22 disables multithreaded wasm in Node; a forced worker shim gained only 1.17x per step,
  // so spotpipe runs one single-threaded peer per core instead.
  wasm.setThreadsCount?.(1)
  if (!await tf.setBackend('wasm')) throw new BackendError('tf.setBackend(\'wasm\') returned false')
}

async function loadCpu (): Promise<void> {
  if (!await tf.setBackend('cpu')) throw new BackendError('tf.setBackend(\'cpu\') returned false')
}

const LOADERS: Record<BackendName, () => Promise<void>> = { tensorflow: loadNative, wasm: loadWasm, cpu: loadCpu }

export function parseBackendName (value: string): BackendName {
  if ((BACKENDS as readonly string[]).includes(value)) return value as BackendName
  throw new BackendError(`unknown backend "${value}": expected one of ${BACKENDS.join(', ')}`)
}

export interface InitBackendOptions {
  /** Backend to try first. @default process.env.SPOTPIPE_BACKEND, else the order tensorflow, wasm, cpu */
  backend?: BackendName
  /** Throw instead of falling back when the requested backend fails. @default false */
  strict?: boolean
  /** Log the chosen backend on stderr. @default false */
  announce?: boolean
}

let active: BackendName | undefined

/** Select and initialise the backend once per process; later calls return the active one. */
export async function initBackend (opts: InitBackendOptions = {}): Promise<BackendName> {
  const envChoice = process.env.SPOTPIPE_BACKEND
  const requested = opts.backend ?? (envChoice != null && envChoice !== '' ? parseBackendName(envChoice) : undefined)
  if (active != null && (requested == null || requested === active)) return active
  const order: BackendName[] = requested != null
    ? [requested, ...BACKENDS.filter(b => b !== requested && (b !== 'tensorflow'))]
    : [...BACKENDS]
  for (const name of order) {
    try {
      await LOADERS[name]()
      await tf.ready()
      active = name
      if (opts.announce === true) log.info(`compute backend: ${name}`)
      else log('compute backend: %s', name)
      return name
    } catch (err) {
      if (opts.strict === true && name === requested) {
        throw new BackendError(`backend "${name}" failed to load: ${(err as Error).message}`, { cause: err })
      }
      if (name === requested || name !== 'tensorflow') log.info(`backend ${name} unavailable (${(err as Error).message.split('\n')[0]}); falling back`)
      else log('backend %s unavailable: %s', name, (err as Error).message)
    }
  }
  throw new BackendError('no tfjs backend could be initialised')
}
