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
  readonly peerTransfers: Counter<'direction' | 'outcome' | 'transport'>;
  readonly peerBytesUploaded: Counter<'transport'>;
  readonly peersConnected: Gauge;
  readonly peersQuarantined: Gauge;
  readonly peerLookupSeconds: Histogram<'found'>;
  readonly upstreamRequests: Counter<'registry' | 'code'>;
  readonly upstreamRateLimited: Counter<'registry'>;
  readonly upstreamRateLimitRemaining: Gauge<'registry'>;
  readonly upstreamRateLimitLimit: Gauge<'registry'>;
  readonly upstreamBackoffSeconds: Gauge<'registry'>;
  readonly cacheMaxBytes: Gauge;
  readonly cacheEvictions: Counter;
  readonly tagResolutions: Counter<'outcome'>;
  readonly dhtRoutingTableSize: Gauge;
  readonly advertisedKeys: Gauge;
  readonly dhtProviderRecords: Gauge;
  readonly peerRefusals: Counter<'kind'>;
  readonly peerProvideSeconds: Histogram<'result'>;
  readonly pullReports: Counter<'outcome'>;
  readonly ready: Gauge;
  readonly info: Gauge<'version' | 'service'>;
  /** Set by the service: what `peerpull_ready` reports at each scrape. */
  readinessCheck: (() => Promise<boolean>) | undefined;

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
      help: 'Blob transfers between peers by direction (download/upload), outcome (ok/busy/stalled/failed/corrupt/aborted) and transport (libp2p/http)',
      labelNames: ['direction', 'outcome', 'transport'],
      registers: [this.registry],
    });
    this.peerBytesUploaded = new Counter({ name: `${prefix}_peer_bytes_uploaded_total`, help: 'Bytes sent to other nodes, by transport (libp2p/http)', labelNames: ['transport'], registers: [this.registry] });
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
    this.upstreamRequests = new Counter({
      name: `${prefix}_upstream_requests_total`,
      help: 'Requests to upstream registries (token requests excluded), by registry and HTTP status code ("error": no response)',
      labelNames: ['registry', 'code'],
      registers: [this.registry],
    });
    this.upstreamRateLimited = new Counter({
      name: `${prefix}_upstream_rate_limited_total`,
      help: 'Upstream answers 429 Too Many Requests, by registry',
      labelNames: ['registry'],
      registers: [this.registry],
    });
    this.upstreamRateLimitRemaining = new Gauge({
      name: `${prefix}_upstream_ratelimit_remaining`,
      help: 'Pulls left in the current window as the registry last said (Docker Hub ratelimit-remaining)',
      labelNames: ['registry'],
      registers: [this.registry],
    });
    this.upstreamRateLimitLimit = new Gauge({
      name: `${prefix}_upstream_ratelimit_limit`,
      help: 'Pulls allowed per window as the registry last said (Docker Hub ratelimit-limit)',
      labelNames: ['registry'],
      registers: [this.registry],
    });
    this.upstreamBackoffSeconds = new Gauge({
      name: `${prefix}_upstream_backoff_seconds`,
      help: 'Seconds left before requests go to this registry again after a 429 (0: not backing off)',
      labelNames: ['registry'],
      registers: [this.registry],
    });
    this.cacheMaxBytes = new Gauge({ name: `${prefix}_cache_max_bytes`, help: 'Size the content store is evicted down to (cache-size)', registers: [this.registry] });
    this.cacheEvictions = new Counter({ name: `${prefix}_cache_evictions_total`, help: 'Blobs and manifests evicted to keep the store under cache-size', registers: [this.registry] });
    this.tagResolutions = new Counter({
      name: `${prefix}_tag_resolutions_total`,
      help: 'Tag resolutions by outcome: fresh (cached, within TTL), revalidated (a source answered), stale (served past TTL because every source failed), pinned, not_found, failed',
      labelNames: ['outcome'],
      registers: [this.registry],
    });
    this.dhtRoutingTableSize = new Gauge({ name: `${prefix}_dht_routing_table_size`, help: 'Peers in the kad-dht routing table', registers: [this.registry] });
    this.advertisedKeys = new Gauge({ name: `${prefix}_advertised_keys`, help: 'Blob digests and tags this node provides in the DHT (Spegel: spegel_advertised_keys)', registers: [this.registry] });
    this.dhtProviderRecords = new Gauge({
      name: `${prefix}_dht_provider_records`,
      help: 'DHT provider records this node holds, its own included (bounded by --dht-provider-records)',
      registers: [this.registry],
    });
    this.peerRefusals = new Counter({
      name: `${prefix}_peer_refusals_total`,
      help: 'What peers were refused for going over a limit, by kind (provider-records/connections/uploads)',
      labelNames: ['kind'],
      registers: [this.registry],
    });
    this.peerProvideSeconds = new Histogram({
      name: `${prefix}_peer_provide_seconds`,
      help: 'Time to announce a key in the DHT, by result (ok/failed)',
      labelNames: ['result'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15],
      registers: [this.registry],
    });
    this.pullReports = new Counter({
      name: `${prefix}_pull_reports_total`,
      help: 'Pull records sent to the seed\'s audit log, by outcome (sent/dropped: the seed was unreachable or the queue was full)',
      labelNames: ['outcome'],
      registers: [this.registry],
    });
    const metrics = this;
    this.ready = new Gauge({
      name: `${prefix}_ready`,
      help: 'Whether /readyz answers ready (daemon: the store is writable and a source is usable)',
      registers: [this.registry],
      // Evaluated at each scrape, so it is right even when nothing else asked /readyz.
      async collect() {
        if (metrics.readinessCheck) this.set((await metrics.readinessCheck()) ? 1 : 0);
      },
    });
    this.info = new Gauge({ name: `${prefix}_build_info`, help: 'Always 1; the version and service as labels', labelNames: ['version', 'service'], registers: [this.registry] });
  }
}

/** A counter's (or gauge's) current values summed per value of one label, e.g. bytes served by source. */
export async function sumByLabel(metric: Counter<string> | Gauge<string>, label: string, where?: Record<string, string>): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const { labels, value } of (await metric.get()).values) {
    if (where && Object.entries(where).some(([k, v]) => labels[k] !== v)) continue;
    const key = String(labels[label] ?? '');
    out[key] = (out[key] ?? 0) + value;
  }
  return out;
}
