/** ANSI escape sequences for the full-screen view, and a frame writer that never scrolls. */

const CSI = '\x1b['

export const ENTER_ALT_SCREEN = `${CSI}?1049h`
export const LEAVE_ALT_SCREEN = `${CSI}?1049l`
export const HIDE_CURSOR = `${CSI}?25l`
export const SHOW_CURSOR = `${CSI}?25h`
export const CLEAR_SCREEN = `${CSI}2J`

/**
 * One screen update: cursor home, each line followed by erase-to-end-of-line, then erase below.
 * Lines must already fit the terminal; the first one is drawn bold. No newline after the last
 * line, so a full-height frame never scrolls.
 */
export function frame (lines: readonly string[]): string {
  const body = lines.map((l, i) => (i === 0 && l !== '' ? `${CSI}1m${l}${CSI}0m` : l) + `${CSI}K`).join('\r\n')
  return `${CSI}H${body}${CSI}J`
}
