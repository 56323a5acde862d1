/** Small statistics helpers for the benchmark (pure, unit-tested). */

/** The p-th percentile (0..100) of `values` by nearest rank; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Parses a wrk duration such as `812.00us`, `1.23ms`, `2.00s` or `1.5m` into milliseconds. */
export function parseWrkDuration(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim());
  if (match === null) return Number.NaN;
  const value = Number(match[1]);
  switch (match[2]) {
    case 'us':
      return value / 1000;
    case 'ms':
      return value;
    case 's':
      return value * 1000;
    default:
      return value * 60_000;
  }
}

export interface WrkResult {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  /** Non-2xx/3xx responses plus socket errors. */
  errors: number;
}

/** Reads what the bench needs from `wrk --latency` output. */
export function parseWrkOutput(output: string): WrkResult {
  const number = (pattern: RegExp): number => {
    const match = pattern.exec(output);
    return match === null ? 0 : Number(match[1]);
  };
  const latency = (p: string): number => {
    const match = new RegExp(`^\\s*${p}%\\s+(\\S+)`, 'm').exec(output);
    return match === null ? Number.NaN : parseWrkDuration(match[1]!);
  };
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const socketErrors = socket === null ? 0 : socket.slice(1).reduce((sum, n) => sum + Number(n), 0);
  return {
    requestsPerSecond: number(/Requests\/sec:\s+([\d.]+)/),
    p50Ms: latency('50'),
    p99Ms: latency('99'),
    requests: number(/(\d+) requests in /),
    errors: number(/Non-2xx or 3xx responses:\s+(\d+)/) + socketErrors,
  };
}

export function round(value: number, digits = 2): number {
  if (!Number.isFinite(value)) return value;
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

/** What the bench reads from a `/proc/<pid>/stat` line. */
export interface ProcStat {
  /** One letter: R, S, D, Z (zombie), ... */
  state: string;
  ppid: number;
  /** User and system CPU in clock ticks. */
  utime: number;
  stime: number;
  /** Start time in clock ticks after boot: with the pid, it names a process (pids are reused). */
  starttime: number;
}

/** Parses a `/proc/<pid>/stat` line; the command name in parentheses may hold spaces and ')'. */
export function parseProcStat(text: string): ProcStat {
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 of proc(5): state, ppid (4), utime (14), stime (15), starttime (22)
  return { state: fields[0]!, ppid: Number(fields[1]), utime: Number(fields[11]), stime: Number(fields[12]), starttime: Number(fields[19]) };
}

/** Each value's share of their sum (NaN when the sum is not positive). */
export function shares(values: readonly number[]): number[] {
  const total = values.reduce((sum, value) => sum + value, 0);
  return values.map((value) => (total > 0 ? value / total : Number.NaN));
}

/** The machine's CPU time from the first line of /proc/stat, in clock ticks: busy (user to softirq), idle (idle + iowait), steal (taken by the hypervisor). */
export interface MachineCpu {
  busy: number;
  idle: number;
  steal: number;
}

export function parseMachineCpu(procStat: string): MachineCpu {
  const line = procStat.slice(0, procStat.indexOf('\n') === -1 ? undefined : procStat.indexOf('\n'));
  const [label, ...fields] = line.trim().split(/\s+/);
  if (label !== 'cpu' || fields.length < 8) throw new Error(`not the aggregate cpu line of /proc/stat: '${line}'`);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = fields.map(Number) as [number, number, number, number, number, number, number, number];
  return { busy: user + nice + system + irq + softirq, idle: idle + iowait, steal };
}

/** Of the time between two readings: the share the machine's CPUs were busy and the share stolen (0..1 each). */
export function machineShares(before: MachineCpu, after: MachineCpu): { busy: number; steal: number } {
  const busy = after.busy - before.busy;
  const steal = after.steal - before.steal;
  const total = busy + steal + (after.idle - before.idle);
  return total > 0 ? { busy: busy / total, steal: steal / total } : { busy: Number.NaN, steal: Number.NaN };
}
