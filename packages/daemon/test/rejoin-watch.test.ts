import { describe, test } from 'node:test';
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

const seeds = new Set(['seed-1', 'seed-2']);
const watched = (peer: string): boolean => seeds.has(peer);

describe('watchRejoins', () => {
  test('a seed that was lost and is back triggers one call; first connections and other peers do not', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    const net = events();
    const calls: number[] = [];
    const stop = watchRejoins(net.target, (peers) => calls.push(peers), { watched });
    net.connect('seed-1'); // first connection: not a rejoin
    net.connect('node-a');
    net.disconnect('node-a');
    net.connect('node-a'); // an ordinary peer's churn: not watched
    t.mock.timers.tick(5_000);
    assert.deepEqual(calls, []);

    net.disconnect('seed-1');
    net.disconnect('seed-2');
    net.connect('seed-1'); // however short the gap looked from here (a blackholed connection can look open)
    net.connect('seed-2');
    assert.deepEqual(calls, [], 'settles a moment first');
    t.mock.timers.tick(1_000);
    assert.deepEqual(calls, [2], 'one call for both seeds');
    stop();
  });

  test('at most one call a minute: a flapping link is not a provide storm', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    const net = events();
    const calls: number[] = [];
    const stop = watchRejoins(net.target, (peers) => calls.push(peers), { watched });
    for (let i = 0; i < 5; i++) {
      net.disconnect('seed-1');
      t.mock.timers.tick(6_000);
      net.connect('seed-1');
      t.mock.timers.tick(1_000);
    }
    assert.equal(calls.length, 1, `calls: ${calls}`);
    t.mock.timers.tick(60_000);
    assert.equal(calls.length, 2, 'the later rejoins are handled once the minute passed');
    stop();
    net.disconnect('seed-1');
    net.connect('seed-1');
    t.mock.timers.tick(120_000);
    assert.equal(calls.length, 2, 'nothing after stop()');
  });
});
