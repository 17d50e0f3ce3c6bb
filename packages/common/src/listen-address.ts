/** `HOST:PORT`, `[v6]:PORT` or `:PORT` (all interfaces). */
export function parseListenAddress(value: string): { host: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:]*)):(\d{1,5})$/.exec(value.trim());
  const port = Number(match?.[3]);
  if (!match || port > 65535) throw new Error(`invalid listen address "${value}" (expected HOST:PORT, e.g. 127.0.0.1:5050)`);
  return { host: match[1] ?? (match[2] || '0.0.0.0'), port };
}

export function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
