// `node test/bench/kill9.bench.ts`: the crash soak, kill -9 of a daemon at random moments during 20
// concurrent pulls, KILL_ROUNDS times (default 50; the CI suite runs 10: test/e2e/hardening-faults.test.ts).
// After every kill: every file under blobs/ hashes to its name, start-up empties tmp/, the daemon's `cache
// verify` finds nothing, and the pulls complete on retry. Prints one line per round and a summary with the
// count; exit status 1 if any round broke a rule. Environment: KILL_ROUNDS (50), KILL_SEED (9),
// KILL_CLIENTS (20).
import { CrashLoop } from '../e2e/crash-loop.ts';

const rounds = Number(process.env.KILL_ROUNDS ?? 50);
const clients = Number(process.env.KILL_CLIENTS ?? 20);
const loop = new CrashLoop({
  rounds,
  clients,
  seed: Number(process.env.KILL_SEED ?? 9),
  log: (line) => process.stdout.write(`${line}\n`),
});
const started = Date.now();
await loop.setup();
let failed = false;
try {
  const result = await loop.run();
  const bad = result.rounds.filter((r) => r.corruptAfterKill.length > 0 || r.tmpAfterRestart > 0 || (r.verifyBad ?? 0) > 0 || r.retryOk !== clients);
  const midDownload = result.rounds.filter((r) => r.tmpAfterKill > 0).length;
  process.stdout.write(
    `\n${result.kills} kill -9 in ${result.rounds.length} rounds (${midDownload} killed mid-download) in ${((Date.now() - started) / 1000).toFixed(0)} s: ` +
      `${bad.length} rounds with a corrupt blob, a leftover temp file, a bad verify or a failed retry\n`,
  );
  failed = bad.length > 0;
} finally {
  await loop.teardown();
}
process.exit(failed ? 1 : 0);
