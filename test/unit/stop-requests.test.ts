import { StopRequests, type StopFunction } from '../../src/stop-requests.js';

function recorder(): { stop: StopFunction; calls: [Record<string, unknown>, boolean][] } {
  const calls: [Record<string, unknown>, boolean][] = [];
  return { stop: (reason, now) => calls.push([reason, now]), calls };
}

test('a request before the gateway is up is kept and carried out when it is, once', () => {
  const requests = new StopRequests(() => {
    throw new Error('must not exit');
  });
  requests.request({ signal: 'SIGTERM' }, false);
  const { stop, calls } = recorder();
  requests.started(stop);
  expect(calls).toEqual([[{ signal: 'SIGTERM' }, false]]);
  requests.request({ signal: 'SIGTERM' }, true);
  expect(calls).toEqual([
    [{ signal: 'SIGTERM' }, false],
    [{ signal: 'SIGTERM' }, true],
  ]);
});

test('a second request that says now, before the gateway is up, exits at once', () => {
  let exits = 0;
  const requests = new StopRequests(() => exits++);
  requests.request({ signal: 'SIGTERM' }, false);
  expect(exits).toBe(0);
  requests.request({ signal: 'SIGINT' }, true);
  expect(exits).toBe(1);
});

test('with no early request, starting stops nothing; later requests go straight through', () => {
  const requests = new StopRequests();
  const { stop, calls } = recorder();
  requests.started(stop);
  expect(calls).toEqual([]);
  requests.request({ from: 'primary' }, false);
  expect(calls).toEqual([[{ from: 'primary' }, false]]);
});
