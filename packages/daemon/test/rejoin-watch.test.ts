import { describe, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { watchRejoins, type PeerEvents } from '../src/rejoin-watch.ts';

/** A libp2p stand-in: only the two events the watcher listens to. */
function events() {
  const events = new EventTarget();
  const target: PeerEvents = {
    addEventListener: (type, listener) => events.addEventListener(type, listener as EventListener),
    removeEventListener: (type, listener) => events.removeEventListener(type, listener as EventListener),
  };
  return {
    target,
    connect: (peer: string) => events.dispatchEvent(new CustomEvent('peer:connect', { detail: peer })),
    disconnect: (peer: string) => events.dispatchEvent(new CustomEvent('peer:disconnect', { detail: peer })),
  };
}

describe('watchRejoins', () => {
  test('peers back after being gone a while trigger one call; first connections and quick redials do not', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    const net = events();
    const calls: number[] = [];
    const stop = watchRejoins(net.target, (peers) => calls.push(peers));
    net.connect('a'); // first connection: not a rejoin
    net.connect('b');
    net.disconnect('a');
    t.mock.timers.tick(1_000);
    net.connect('a'); // back after 1 s: a redial, not a heal
    t.mock.timers.tick(2_000);
    assert.deepEqual(calls, []);

    net.disconnect('a');
    net.disconnect('b');
    t.mock.timers.tick(20_000); // a partition
    net.connect('a');
    net.connect('b');
    assert.deepEqual(calls, [], 'settles a moment first');
    t.mock.timers.tick(1_000);
    assert.deepEqual(calls, [2], 'one call for both peers');
    stop();
  });

  test('at most one call per 30 s: a flapping link is not a provide storm', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    const net = events();
    const calls: number[] = [];
    const stop = watchRejoins(net.target, (peers) => calls.push(peers));
    for (let i = 0; i < 5; i++) {
      net.disconnect('a');
      t.mock.timers.tick(6_000);
      net.connect('a');
      t.mock.timers.tick(1_000);
    }
    assert.equal(calls.length, 1, `calls: ${calls}`);
    t.mock.timers.tick(30_000);
    assert.equal(calls.length, 2, 'the later rejoins are handled once the interval passed');
    stop();
    net.disconnect('a');
    t.mock.timers.tick(10_000);
    net.connect('a');
    t.mock.timers.tick(60_000);
    assert.equal(calls.length, 2, 'nothing after stop()');
  });
});
