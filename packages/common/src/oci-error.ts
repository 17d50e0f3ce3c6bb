// OCI distribution error codes and the JSON body clients expect.
// See https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes

export type OciErrorCode =
  | 'BLOB_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'RANGE_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'TOOMANYREQUESTS'
  | 'TAG_INVALID'
  | 'UNAVAILABLE';

export class OciError extends Error {
  readonly status: number;
  readonly code: OciErrorCode;
  readonly detail: unknown;
  readonly headers: Record<string, string>;

  constructor(status: number, code: OciErrorCode, message: string, detail?: unknown, headers: Record<string, string> = {}) {
    super(message);
    this.name = 'OciError';
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.headers = headers;
  }

  toBody(): { errors: { code: OciErrorCode; message: string; detail?: unknown }[] } {
    const error: { code: OciErrorCode; message: string; detail?: unknown } = { code: this.code, message: this.message };
    if (this.detail !== undefined) error.detail = this.detail;
    return { errors: [error] };
  }
}

export const isOciError = (err: unknown): err is OciError => err instanceof OciError;
