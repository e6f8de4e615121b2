// Durations and sizes as operators write them in flags: 500ms, 30s, 10m, 24h; 20GB, 512MiB; 50MB/s.

const DURATION: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds in "1h30m", "500ms", "10s". A bare number is seconds. */
export function parseDuration(s: string): number {
  const t = s.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(t); m; m = re.exec(t)) {
    total += Number(m[1]) * DURATION[m[2]!]!;
    end = re.lastIndex;
  }
  if (end === 0 || end !== t.length) throw new Error(`expected a duration such as 500ms, 30s, 10m or 24h, got ${JSON.stringify(s)}`);
  return total;
}

const SIZE: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** Bytes in "20GB", "512MiB", "1024". */
export function parseBytes(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(s);
  const unit = m?.[2]?.toLowerCase();
  if (!m || unit === undefined || !(unit in SIZE)) throw new Error(`expected a size such as 512MiB or 20GB, got ${JSON.stringify(s)}`);
  return Math.round(Number(m[1]) * SIZE[unit]!);
}

/** Bytes per second in "50MB/s". */
export function parseRate(s: string): number {
  const m = /^(.*)\/s$/.exec(s.trim());
  if (!m) throw new Error(`expected a rate such as 50MB/s, got ${JSON.stringify(s)}`);
  return parseBytes(m[1]!);
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${s % 60 ? `${s % 60}s` : ''}`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${m % 60 ? `${m % 60}m` : ''}`;
  return `${Math.floor(h / 24)}d`;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)}${units[i]}`;
}
