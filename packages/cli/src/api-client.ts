import { EXIT } from './exit-codes.ts';

/** A request to a daemon or seed API that failed, with the exit code it maps to. */
export class ApiError extends Error {
  override name = 'ApiError';
  readonly exitCode: number;
  readonly status: number | undefined;

  constructor(message: string, exitCode: number, status?: number) {
    super(message);
    this.exitCode = exitCode;
    this.status = status;
  }
}

export interface ApiRequest {
  method?: 'GET' | 'POST';
  body?: unknown;
  token?: string | undefined;
  timeoutMs?: number;
}

/** Calls a JSON API; an unreachable service, a refusal, a 404 or 400 become ApiErrors with their exit codes. */
export async function apiJson<T>(base: string, path: string, req: ApiRequest = {}): Promise<T> {
  const res = await apiFetch(base, path, req);
  const text = await res.text();
  let doc: unknown;
  try {
    doc = text ? JSON.parse(text) : undefined;
  } catch {
    throw new ApiError(`${base}${path}: not a JSON answer (HTTP ${res.status}): is this a peerpull ${path.includes('prefetch') || path.includes('pulls') ? 'seed' : 'daemon'}?`, EXIT.problem, res.status);
  }
  if (!res.ok) throw statusError(base, path, res.status, (doc as { error?: string } | undefined)?.error ?? text.slice(0, 200));
  return doc as T;
}

/** The raw response (for streamed answers); an unreachable service is an ApiError, the status is the caller's to check. */
export async function apiFetch(base: string, path: string, req: ApiRequest = {}): Promise<Response> {
  const url = `${base.replace(/\/+$/, '')}${path}`;
  const headers: Record<string, string> = { accept: 'application/json', 'user-agent': 'peerpull-cli' };
  if (req.token) headers.authorization = `Bearer ${req.token}`;
  if (req.body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(url, {
      method: req.method ?? 'GET',
      headers,
      ...(req.body !== undefined ? { body: JSON.stringify(req.body) } : {}),
      ...(req.timeoutMs ? { signal: AbortSignal.timeout(req.timeoutMs) } : {}),
    });
  } catch (err) {
    throw new ApiError(`cannot reach ${base}: ${describe(err as Error)}`, EXIT.unreachable);
  }
  return res;
}

export function statusError(base: string, path: string, status: number, message: string): ApiError {
  const where = `${base.replace(/\/+$/, '')}${path.split('?')[0]}`;
  if (status === 401 || status === 403) return new ApiError(`${where}: ${message || 'refused'}${status === 401 ? ' (give --admin-token or PEERPULL_ADMIN_TOKEN)' : ''}`, EXIT.refused, status);
  if (status === 404) return new ApiError(message || `${where}: not found (is this the right peerpull service and version?)`, EXIT.notFound, status);
  if (status === 400) return new ApiError(message || `${where}: bad request`, EXIT.usage, status);
  if (status === 503 || status === 502 || status === 504) return new ApiError(`${where}: ${message || `HTTP ${status}`}`, EXIT.unreachable, status);
  return new ApiError(`${where}: HTTP ${status}: ${message}`, EXIT.problem, status);
}

function describe(err: Error): string {
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return 'timed out';
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code === 'ECONNREFUSED') return 'connection refused (is it running? the daemon API listens on its --listen address, 127.0.0.1:5050 by default)';
  return cause?.code ?? cause?.message ?? err.message;
}
