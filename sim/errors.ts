/**
 * Typed errors of the churn simulator. Each carries a stable code, like the model layer's errors.
 */
import { SpotpipeError } from '../common/index.js'

/** A trace file or trace object is malformed; the message names the field and the problem. */
export class TraceError extends SpotpipeError {
  constructor (message: string, options?: { cause?: unknown }) { super('ERR_TRACE', message, options) }
}

/** A simulation setting is out of range or inconsistent (unknown strategy, bad rate, ...). */
export class SimConfigError extends SpotpipeError {
  constructor (message: string) { super('ERR_SIM_CONFIG', message) }
}

/** A worker process of a multi-run experiment failed or sent something unreadable. */
export class SimWorkerError extends SpotpipeError {
  constructor (message: string, options?: { cause?: unknown }) { super('ERR_SIM_WORKER', message, options) }
}

/** resvg could not render the plot's SVG to PNG. */
export class PlotRenderError extends SpotpipeError {
  constructor (message: string, options?: { cause?: unknown }) { super('ERR_PLOT_RENDER', message, options) }
}

/** No font was found for the plot's text: the PNG would have its lines but no labels or legend names. */
export class PlotFontError extends SpotpipeError {
  constructor (message: string) { super('ERR_PLOT_FONT', message) }
}
