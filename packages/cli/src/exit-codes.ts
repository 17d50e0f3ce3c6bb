/**
 * Exit codes of the operator commands (status, explain, prefetch, cache, pulls), for scripts:
 * 0 all good; 1 it ran and found a problem (not ready, a prefetch failed, corrupt blobs);
 * 2 usage; 3 the daemon or seed could not be reached; 4 no such image or digest;
 * 5 refused (admin token missing or wrong, or not a loopback client).
 */
export const EXIT = {
  ok: 0,
  problem: 1,
  usage: 2,
  unreachable: 3,
  notFound: 4,
  refused: 5,
} as const;

export const EXIT_CODES_HELP = `Exit codes: 0 ok; 1 a problem was found (not ready, failed, corrupt);
2 usage; 3 the daemon or seed is unreachable; 4 no such image or digest; 5 refused
(admin token, or the daemon API was called from another host).`;
