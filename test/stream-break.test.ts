/**
 * Stream-break reports at the coordinator: one made under an earlier epoch is about a pipeline the
 * cluster already replaced (the neighbour of a lost peer reports while the recovery runs), so it is
 * dropped quietly; one under the current epoch about a peer that holds no stage is still an error.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { Coordinator } from '../coordinator/index.js'
import type { StreamBreakReport } from '../protocols/index.js'

class Probe extends Coordinator {
  report (m: StreamBreakReport, from: string): void { this.onStreamBreak(m, from) }
}

afterEach(() => { vi.restoreAllMocks() })

describe('stream-break reports', () => {
  it('drops a report from an earlier epoch quietly, and names one about an unassigned peer now as an error', () => {
    const quiet = process.env.SPOTPIPE_QUIET
    delete process.env.SPOTPIPE_QUIET
    const lines: string[] = []
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => { lines.push(String(chunk)); return true })
    try {
      const c = new Probe({ clusterId: 'sb', model: { dModel: 16, nHeads: 2, nBlocks: 2, seqLen: 8 }, train: { stages: 2 } })
      c.epoch = 3
      const m: StreamBreakReport = { kind: 'stream-break', reporter: 'peer-a', stage: 1, suspect: 'peer-b', epoch: 2, iteration: 5, reason: 'stream reset' }
      c.report(m, 'peer-a')
      expect(lines.filter(l => l.includes('error'))).toEqual([])
      c.report({ ...m, epoch: 3 }, 'peer-a')
      expect(lines.filter(l => l.includes('error') && l.includes('stream-break report from peer-a about peer-b ignored')).length).toBe(1)
    } finally {
      if (quiet != null) process.env.SPOTPIPE_QUIET = quiet
    }
  })
})
