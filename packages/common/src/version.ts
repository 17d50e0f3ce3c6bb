/** The version every peerpull component reports (status, heartbeats, `peerpull_build_info`). */
export const PEERPULL_VERSION = '0.1.0';
