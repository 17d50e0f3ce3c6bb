import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Prometheus metrics shared by the daemon and the seed. Names follow Spegel's where it has
 * an equivalent (`*_mirror_requests_total{registry,cache}` → requests by registry and source).
 */
export class MirrorMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'registry' | 'kind' | 'result' | 'source'>;
  readonly bytesServed: Counter<'source'>;
  readonly bytesFetched: Counter<'source'>;
  readonly requestDuration: Histogram<'kind' | 'source'>;
  readonly cacheBytes: Gauge;
  readonly cacheEntries: Gauge;
  readonly seedUp: Gauge<'seed'>;
  readonly peerTransfers: Counter<'direction' | 'outcome'>;
  readonly peerBytesUploaded: Counter;
  readonly peersConnected: Gauge;
  readonly peersQuarantined: Gauge;
  readonly peerLookupSeconds: Histogram<'found'>;

  constructor(prefix = 'peerpull') {
    collectDefaultMetrics({ register: this.registry, prefix: `${prefix}_` });
    this.requests = new Counter({
      name: `${prefix}_mirror_requests_total`,
      help: 'Pull requests by upstream registry, kind (manifest/blob), result (hit/miss/error) and source that served them',
      labelNames: ['registry', 'kind', 'result', 'source'],
      registers: [this.registry],
    });
    this.bytesServed = new Counter({
      name: `${prefix}_bytes_served_total`,
      help: 'Bytes sent to clients, by the source they came from',
      labelNames: ['source'],
      registers: [this.registry],
    });
    this.bytesFetched = new Counter({
      name: `${prefix}_bytes_fetched_total`,
      help: 'Bytes fetched into the store, by source (upstream bytes are WAN bytes)',
      labelNames: ['source'],
      registers: [this.registry],
    });
    this.requestDuration = new Histogram({
      name: `${prefix}_request_duration_seconds`,
      help: 'Time to answer a pull request (until the last byte)',
      labelNames: ['kind', 'source'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120],
      registers: [this.registry],
    });
    this.cacheBytes = new Gauge({ name: `${prefix}_cache_bytes`, help: 'Bytes held in the content store', registers: [this.registry] });
    this.seedUp = new Gauge({ name: `${prefix}_seed_up`, help: 'Whether each configured seed is answering (0 while skipped after a failure)', labelNames: ['seed'], registers: [this.registry] });
    this.peerTransfers = new Counter({
      name: `${prefix}_peer_transfers_total`,
      help: 'Blob transfers between peers by direction (download/upload) and outcome (ok/busy/failed/corrupt/aborted)',
      labelNames: ['direction', 'outcome'],
      registers: [this.registry],
    });
    this.peerBytesUploaded = new Counter({ name: `${prefix}_peer_bytes_uploaded_total`, help: 'Bytes sent to other nodes over libp2p', registers: [this.registry] });
    this.peersConnected = new Gauge({ name: `${prefix}_peers_connected`, help: 'libp2p peers currently connected', registers: [this.registry] });
    this.peersQuarantined = new Gauge({ name: `${prefix}_peers_quarantined`, help: 'Peers not asked for blobs because they sent bad bytes', registers: [this.registry] });
    this.peerLookupSeconds = new Histogram({
      name: `${prefix}_peer_lookup_seconds`,
      help: 'DHT provider lookup time, by whether a provider was found',
      labelNames: ['found'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1],
      registers: [this.registry],
    });
    this.cacheEntries = new Gauge({ name: `${prefix}_cache_entries`, help: 'Blobs and manifests held in the content store', registers: [this.registry] });
  }
}
