import { machineShares, median, parseMachineCpu, parseProcStat, parseWrkDuration, parseWrkOutput, percentile, shares } from '../../bench/stats.js';

const WRK = `Running 2s test @ http://127.0.0.1:40000/v1/chat/completions
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     7.09ms    3.10ms  72.39ms   90.00%
    Req/Sec     7.73k   500.00     8.20k    70.00%
  Latency Distribution
     50%    7.09ms
     75%    8.00ms
     90%    9.50ms
     99%  812.00us
  15452 requests in 2.00s, 9.10MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   7726.10
Transfer/sec:      4.55MB
`;

describe('bench statistics', () => {
  it('computes nearest-rank percentiles and medians', () => {
    const values = [5, 1, 4, 2, 3, 6, 7, 8, 9, 10];
    expect(percentile(values, 50)).toBe(5);
    expect(percentile(values, 99)).toBe(10);
    expect(percentile(values, 0)).toBe(1);
    expect(percentile([], 50)).toBeNaN();
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
  });

  it('parses wrk durations in every unit', () => {
    expect(parseWrkDuration('812.00us')).toBeCloseTo(0.812);
    expect(parseWrkDuration('1.5ms')).toBe(1.5);
    expect(parseWrkDuration('2.00s')).toBe(2000);
    expect(parseWrkDuration('1.00m')).toBe(60_000);
    expect(parseWrkDuration('soon')).toBeNaN();
  });

  it('reads throughput, percentiles and errors from wrk --latency output', () => {
    expect(parseWrkOutput(WRK)).toEqual({ requestsPerSecond: 7726.1, p50Ms: 7.09, p99Ms: 0.812, requests: 15452, errors: 7 });
  });

  it('reads state, parent, CPU ticks and start time from /proc/<pid>/stat, whatever the command name holds', () => {
    const stat = '3069 (node (x) y) S 3061 3061 313 0 -1 4194560 9000 0 3 0 412 57 0 0 20 0 11 0 1068013 1234567 25000 18446744073709551615';
    expect(parseProcStat(stat)).toEqual({ state: 'S', ppid: 3061, utime: 412, stime: 57, starttime: 1068013 });
  });

  it('gives each value its share of the sum', () => {
    expect(shares([1, 3])).toEqual([0.25, 0.75]);
    expect(shares([0, 0])).toEqual([Number.NaN, Number.NaN]);
    expect(shares([])).toEqual([]);
  });

  it('reads the machine-wide CPU line of /proc/stat: busy, idle (with iowait), stolen', () => {
    const stat = 'cpu  100 5 50 1000 20 3 2 7 0 0\ncpu0 50 2 25 500 10 1 1 3 0 0\n';
    expect(parseMachineCpu(stat)).toEqual({ busy: 160, idle: 1020, steal: 7 });
    expect(() => parseMachineCpu('cpu0 1 2 3 4 5 6 7 8\n')).toThrow(/aggregate cpu line/);
  });

  it('gives the share of the time the machine was busy and the share stolen between two readings', () => {
    expect(machineShares({ busy: 100, idle: 100, steal: 0 }, { busy: 250, idle: 130, steal: 20 })).toEqual({ busy: 0.75, steal: 0.1 });
    expect(machineShares({ busy: 1, idle: 1, steal: 1 }, { busy: 1, idle: 1, steal: 1 })).toEqual({ busy: Number.NaN, steal: Number.NaN });
  });
});
