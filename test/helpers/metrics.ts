/**
 * Reading a prom-client registry back in tests, through prom-client's own accessors rather than by
 * parsing its exposition text: every series of a metric with its sample name (`<name>_bucket`,
 * `_sum`, `_count` for a histogram) and its labels as strings.
 */
import type { Registry } from 'prom-client'

export interface Series { sample: string, labels: Record<string, string>, value: number }

/** Every series of metric `name` in `registry`; throws when the registry has no such metric. */
export async function seriesOf (registry: Registry, name: string): Promise<Series[]> {
  const metric = registry.getSingleMetric(name)
  if (metric == null) throw new Error(`no metric ${name} in the registry`)
  const got = await metric.get()
  return got.values.map(v => ({
    sample: (v as { metricName?: string }).metricName ?? name,
    labels: Object.fromEntries(Object.entries(v.labels).map(([k, l]) => [k, String(l)])),
    // prom-client reports NaN as null
    value: v.value ?? NaN
  }))
}

/** The value of the one series of `name` whose sample name is `sample` and whose labels are exactly `labels`. */
export async function valueOf (registry: Registry, name: string, labels: Record<string, string> = {}, sample = name): Promise<number | undefined> {
  const want = JSON.stringify(Object.entries(labels).sort())
  return (await seriesOf(registry, name)).find(s => s.sample === sample && JSON.stringify(Object.entries(s.labels).sort()) === want)?.value
}

/** The type prom-client declares for `name` (counter, gauge, histogram, summary). */
export async function typeOf (registry: Registry, name: string): Promise<string | undefined> {
  // prom-client's typings call it a numeric enum; at run time it is the type's name
  const type: unknown = (await registry.getSingleMetric(name)?.get())?.type
  return type == null ? undefined : String(type)
}

/** A Grafana dashboard's PromQL, panel by panel (rows' nested panels included). */
export function dashboardQueries (dashboard: unknown): Array<{ panel: string, expr: string }> {
  interface Panel { title?: string, targets?: Array<{ expr?: string }>, panels?: Panel[] }
  const out: Array<{ panel: string, expr: string }> = []
  const visit = (ps: Panel[] | undefined): void => {
    for (const p of ps ?? []) {
      for (const t of p.targets ?? []) if (t.expr != null) out.push({ panel: p.title ?? '', expr: t.expr })
      visit(p.panels)
    }
  }
  visit((dashboard as { panels?: Panel[] }).panels)
  return out
}
