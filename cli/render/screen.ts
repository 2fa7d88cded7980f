/**
 * The observer's screens as pure functions of (view, width, height) -> lines. No line is ever
 * wider than `width`: columns are dropped by priority as the terminal narrows (the gradient norm,
 * the all-reduce time, the sparkline, tokens/s and the role go first), and whatever still does not
 * fit is cut.
 *
 * A cluster with replicas (ClusterView.replicated) gets two more columns, REPL (serving replicas of
 * the stage, joining ones, and `!` when the stage is one loss away from a whole-stage failure) and
 * ALLRED (the stage's all-reduce time), and the header names the stages at risk. Without replicas
 * every stage is one loss away from failing, always: nothing is flagged.
 */
import type { ClusterView, ClusterEvent, PeerStatus, StageStatus } from '../cluster-status.js'
import { fit, formatAge, formatClock, formatDuration, formatInt, formatLoss, shortId, textWidth, truncate } from './format.js'
import { sparkline } from './sparkline.js'

interface Row {
  stage: number | null
  peer: PeerStatus | null
  history: number[]
  /** The stage's status; null for a spare. */
  st: StageStatus | null
  /** The stage's first row: the per-stage cells (REPL, ALLRED) are drawn there only. */
  first: boolean
}

interface Column {
  key: string
  title: string
  width: number
  align: 'left' | 'right'
  cell: (r: Row, v: ClusterView, width: number) => string
}

const GAP = '  '
const SPARK_MIN = 8
const SPARK_MAX = 24

const COLUMNS: Record<string, Column> = {
  stage: { key: 'stage', title: 'STAGE', width: 5, align: 'left', cell: r => r.stage == null ? '-' : String(r.stage) },
  peer: { key: 'peer', title: 'PEER', width: 8, align: 'left', cell: r => r.peer == null ? '(none)' : shortId(r.peer.peerId) },
  repl: { key: 'repl', title: 'REPL', width: 6, align: 'left', cell: r => r.st == null || !r.first ? '' : replCell(r.st) },
  role: { key: 'role', title: 'ROLE', width: 9, align: 'left', cell: r => r.peer == null ? '' : r.peer.departing ? 'departing' : r.st?.joining.includes(r.peer.peerId) === true ? 'joining' : r.peer.role },
  iter: { key: 'iter', title: 'ITER', width: 6, align: 'right', cell: r => r.peer?.iteration == null ? '-' : String(r.peer.iteration) },
  loss: { key: 'loss', title: 'LOSS', width: 7, align: 'right', cell: r => formatLoss(r.peer?.loss) },
  spark: { key: 'spark', title: '', width: SPARK_MIN, align: 'left', cell: (r, _v, w) => r.peer?.loss == null ? '' : sparkline(r.history, w) },
  grad: { key: 'grad', title: 'GRAD', width: 7, align: 'right', cell: r => r.peer?.gradNorm == null || r.peer.role !== 'stage' ? '-' : r.peer.gradNorm.toPrecision(3) },
  allred: { key: 'allred', title: 'ALLRED', width: 7, align: 'right', cell: r => r.st == null || !r.first ? '' : r.st.allReduceMs == null ? '-' : formatDuration(r.st.allReduceMs) },
  toks: { key: 'toks', title: 'TOK/S', width: 8, align: 'right', cell: r => r.peer?.tokensPerSec == null || r.peer.tokensPerSec <= 0 ? '-' : formatInt(r.peer.tokensPerSec) },
  age: {
    key: 'age',
    title: 'HEARTBEAT',
    width: 9,
    align: 'right',
    cell: (r, v) => {
      const age = r.peer?.heartbeatAgeMs
      if (age == null) return r.peer == null ? '' : 'never'
      return formatAge(age) + (age > v.silentMs ? ' !' : '  ')
    }
  }
}

/** Display order of the table's columns. */
const ORDER = ['stage', 'repl', 'peer', 'role', 'iter', 'loss', 'spark', 'grad', 'allred', 'toks', 'age']
/** Which columns survive as the width shrinks: earlier ones win. */
const PRIORITY = ['stage', 'peer', 'loss', 'age', 'repl', 'iter', 'role', 'toks', 'spark', 'allred', 'grad']
/** The columns only a cluster with replicas shows. */
const REPLICA_COLUMNS = new Set(['repl', 'allred'])

/** REPL: serving replicas, `+N` joining, `!` when one more loss is a whole-stage failure. */
function replCell (st: StageStatus): string {
  return `${st.replicas}${st.joining.length > 0 ? `+${st.joining.length}` : ''}${st.atRisk ? ' !' : ''}`
}

/**
 * The columns that fit in `width`, in display order, with the sparkline widened to use spare room;
 * REPL and ALLRED only with `replicated`.
 */
export function layoutColumns (width: number, replicated = false): Column[] {
  const chosen = new Set<string>()
  let used = 0
  for (const key of PRIORITY) {
    if (!replicated && REPLICA_COLUMNS.has(key)) continue
    const add = COLUMNS[key].width + (chosen.size > 0 ? GAP.length : 0)
    if (used + add > width) continue
    chosen.add(key)
    used += add
  }
  const cols = ORDER.filter(k => chosen.has(k)).map(k => ({ ...COLUMNS[k] }))
  const spark = cols.find(c => c.key === 'spark')
  if (spark != null) spark.width = Math.min(SPARK_MAX, SPARK_MIN + (width - used))
  return cols
}

function rowsOf (v: ClusterView): Row[] {
  const rows: Row[] = []
  for (const s of v.status.stages) {
    const history = v.lossHistory.get(s.stage) ?? []
    if (s.peers.length === 0) rows.push({ stage: s.stage, peer: null, history, st: s, first: true })
    s.peers.forEach((p, i) => { rows.push({ stage: s.stage, peer: p, history, st: s, first: i === 0 }) })
  }
  for (const p of v.status.spares) rows.push({ stage: null, peer: p, history: [], st: null, first: true })
  return rows
}

function line (cells: string[], cols: Column[], width: number): string {
  return truncate(cells.map((c, i) => fit(c, cols[i].width, cols[i].align)).join(GAP).trimEnd(), width)
}

/** The table's heading and one line per peer (stages in order, spares last). */
export function renderTable (v: ClusterView, width: number): string[] {
  const cols = layoutColumns(width, v.replicated)
  const out = [line(cols.map(c => c.title), cols, width)]
  for (const r of rowsOf(v)) out.push(line(cols.map(c => c.cell(r, v, c.width)), cols, width))
  return out
}

/** Joins the segments that fit, dropping the ones that do not (the first segment is always kept). */
function fitSegments (segments: Array<string | null>, width: number): string {
  let s = ''
  for (const seg of segments) {
    if (seg == null) continue
    const next = s === '' ? seg : s + GAP + seg
    if (s !== '' && textWidth(next) > width) continue
    s = next
  }
  return truncate(s, width)
}

export function renderHeader (v: ClusterView, width: number, title = 'spotpipe top', hint?: string): string {
  const st = v.status
  const stages = st.stages.length
  const spares = st.spares.length
  return fitSegments([
    title,
    v.connected ? null : `coordinator ${shortId(v.coordinatorId)} UNREACHABLE`,
    `epoch ${st.epoch}`,
    `iter ${st.iteration}`,
    v.replicated ? `at risk: ${st.stagesAtRisk.length === 0 ? 'none' : st.stagesAtRisk.join(', ')}` : null,
    `loss ${formatLoss(v.loss)}`,
    `tok/s ${v.tokensPerSec == null ? '-' : formatInt(v.tokensPerSec)}`,
    st.checkpoint == null ? null : `ckpt ${st.checkpoint}`,
    `cluster ${st.clusterId}`,
    `${stages} stage${stages === 1 ? '' : 's'}, ${spares} spare${spares === 1 ? '' : 's'}`,
    v.connected ? `coordinator ${shortId(v.coordinatorId)}` : null,
    hint ?? null
  ], width)
}

export function renderEvent (e: ClusterEvent, width: number): string {
  return truncate(`${formatClock(e.at)}  ${e.text}`, width)
}

/**
 * The full-screen view: header, stage table, event feed (newest last, as many as fit). At most
 * `height` lines, none wider than `width`.
 */
export function renderTop (v: ClusterView, width: number, height: number): string[] {
  const w = Math.max(1, Math.floor(width))
  const h = Math.max(1, Math.floor(height))
  const out = [renderHeader(v, w, 'spotpipe top', 'q quits')]
  out.push(v.heard ? '' : truncate('waiting for heartbeats (check --cluster and --swarm-key if this persists)', w))
  let table = renderTable(v, w)
  const room = h - out.length
  if (table.length > room) {
    const hidden = table.length - (room - 1)
    table = room >= 2 ? [...table.slice(0, room - 1), truncate(`… ${hidden} more`, w)] : table.slice(0, Math.max(0, room))
  }
  out.push(...table)
  const left = h - out.length
  if (left >= 3) {
    const events = v.status.events
    out.push('', truncate(`EVENTS (${events.length})`, w))
    const fitting = events.slice(-(left - 2))
    if (fitting.length === 0) out.push(truncate('(none yet)', w))
    for (const e of fitting) out.push(renderEvent(e, w))
  }
  return out.slice(0, h)
}

/** A plain snapshot (`spotpipe status`, `top` without a terminal): every row and every event, no height limit. */
export function renderSnapshot (v: ClusterView, width: number, title = 'spotpipe status'): string[] {
  const w = Math.max(20, Math.floor(width))
  const out = [renderHeader(v, w, title)]
  if (!v.heard) out.push(truncate('no heartbeats heard yet (check --cluster and --swarm-key)', w))
  out.push('', ...renderTable(v, w), '', 'EVENTS')
  if (v.status.events.length === 0) out.push('(none)')
  for (const e of v.status.events) out.push(renderEvent(e, w))
  return out
}
