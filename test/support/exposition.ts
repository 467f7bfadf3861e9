/**
 * The samples of one metric in a Prometheus text exposition, keyed by their label set as written
 * (`{credential="orders"}`, or '' for none).
 */
export function samples(exposition: string, name: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of exposition.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{.*\})? (\S+)$/.exec(line);
    if (m?.[1] === name) out[m[2] ?? ''] = Number(m[3]);
  }
  return out;
}
