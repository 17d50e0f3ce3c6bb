import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { watchRejoins, type PeerConnections, type WatchedConnection } from '../src/rejoin-watch.ts';

/**
 * A libp2p stand-in: connections per peer and the two events the watcher listens to. As in libp2p,
 * a closed connection is no longer listed when its close event is dispatched.
 */
function network() {
  const events = new EventTarget();
  const connections = new Map<string, WatchedConnection<string>[]>();
  const target: PeerConnections<string> = {
    addEventListener: (type, listener) => events.addEventListener(type, listener as EventListener),
    removeEventListener: (type, listener) => events.removeEventListener(type, listener as EventListener),
    getConnections: (peer) => connections.get(peer) ?? [],
  };
  return {
    target,
    open(peer: string): WatchedConnection<string> {
      const connection = { remotePeer: peer, status: 'open' };
      connections.set(peer, [...(connections.get(peer) ?? []), connection]);
      events.dispatchEvent(new CustomEvent('connection:open', { detail: connection }));
      return connection;
    },
    close(connection: WatchedConnection<string>): void {
      connection.status = 'closed';
      connections.set(connection.remotePeer, (connections.get(connection.remotePeer) ?? []).filter((c) => c !== connection));
      events.dispatchEvent(new CustomEvent('connection:close', { detail: connection }));
    },
  };
}

const seeds = new Set(['seed-1', 'seed-2']);
const watched = (peer: string): boolean => seeds.has(peer);
const answers = async (): Promise<void> => undefined;
/** Lets a ping's promise settle (setImmediate is not among the mocked timers). */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('watchRejoins', () => {
  test('a seed that was lost and is back triggers one call; first connections and other peers do not', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    const net = network();
    const calls: number[] = [];
    const stop = watchRejoins(net.target, (peers) => calls.push(peers), { watched, ping: answers });
    const seed1 = net.open('seed-1'); // first connection: not a rejoin
    const seed2 = net.open('seed-2');
    net.close(net.open('node-a'));
    net.open('node-a'); // an ordinary peer's churn: not watched
    t.mock.timers.tick(5_000);
    assert.deepEqual(calls, []);

    net.close(seed1);
    net.close(seed2);
    net.open('seed-1'); // however short the gap looked from here (a blackholed connection can look open)
    net.open('seed-2');
    assert.deepEqual(calls, [], 'settles a moment first');
    t.mock.timers.tick(1_000);
    assert.deepEqual(calls, [2], 'one call for both seeds');
    stop();
  });

  test('the seed redialed before this node gave up its dead connection: the peer never disconnected, and it is still a rejoin', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    const net = network();
    const calls: number[] = [];
    const pinged: string[] = [];
    const stop = watchRejoins(net.target, (peers) => calls.push(peers), { watched, ping: async (peer) => void pinged.push(peer) });
    const stale = net.open('seed-1');
    // The partition: the seed drops its end; this end still looks open. The link heals, the seed redials.
    net.open('seed-1');
    t.mock.timers.tick(5_000);
    assert.deepEqual(calls, [], 'a second connection alone is not a rejoin');
    // This node's connection monitor gives up the dead connection; the seed is still connected over the new one.
    net.close(stale);
    await settle();
    assert.deepEqual(pinged, ['seed-1'], 'asks the seed over the connection left');
    t.mock.timers.tick(1_000);
    assert.deepEqual(calls, [1]);
    stop();
  });

  test('a connection closes while another is as dead (the seed does not answer): the rejoin waits for a new connection', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    const net = network();
    const calls: number[] = [];
    const stop = watchRejoins(net.target, (peers) => calls.push(peers), { watched, ping: () => Promise.reject(new Error('timed out')) });
    const first = net.open('seed-1');
    const second = net.open('seed-1'); // two connections to the seed (both sides dialed at once)
    net.close(first); // the partition: one is given up ...
    await settle();
    t.mock.timers.tick(5_000);
    assert.deepEqual(calls, [], 'the seed did not answer over the other one: not back');
    net.close(second); // ... then the other
    await settle();
    net.open('seed-1'); // the link heals
    t.mock.timers.tick(1_000);
    assert.deepEqual(calls, [1]);
    stop();
  });

  test('at most one call a minute: a flapping link is not a provide storm', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    const net = network();
    const calls: number[] = [];
    const stop = watchRejoins(net.target, (peers) => calls.push(peers), { watched, ping: answers });
    let seed = net.open('seed-1');
    for (let i = 0; i < 5; i++) {
      net.close(seed);
      t.mock.timers.tick(6_000);
      seed = net.open('seed-1');
      t.mock.timers.tick(1_000);
    }
    assert.equal(calls.length, 1, `calls: ${calls}`);
    t.mock.timers.tick(60_000);
    assert.equal(calls.length, 2, 'the later rejoins are handled once the minute passed');
    stop();
    net.close(seed);
    net.open('seed-1');
    t.mock.timers.tick(120_000);
    assert.equal(calls.length, 2, 'nothing after stop()');
  });

  test('a ping that answers after stop() calls nothing', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    const net = network();
    const calls: number[] = [];
    let answer: () => void = () => undefined;
    const stop = watchRejoins(net.target, (peers) => calls.push(peers), { watched, ping: () => new Promise<void>((resolve) => (answer = resolve)) });
    const stale = net.open('seed-1');
    net.open('seed-1');
    net.close(stale);
    stop();
    answer();
    await settle();
    t.mock.timers.tick(120_000);
    assert.deepEqual(calls, []);
  });
});
