// The gate of an early Directus start (supervisor/early.py): `node --import <this file>?fd=N …/cli/run.js start`.
//
// Node loads Directus's modules while the supervisor's warm-boot checks run, and goes no further until they pass:
// 1. import the CLI's module graph (cli/index.js: every command, the server and the app), which is what run.js
//    imports first anyway. Evaluating those modules reads the environment and files and creates objects; it opens
//    no database connection and no port (supervisor/early.py says how that was checked, and which settings would
//    change it). Node's compile cache is the only file it may write.
// 2. block, synchronously (no timer, no callback, no promise of those modules runs meanwhile), on the pipe at fd N
//    until the supervisor writes "go\n"; then run.js runs as it would without the gate.
// End of file without "go" (the checks failed, or the supervisor is gone): die by SIGKILL at once, as the worker
// would have been ended before Directus ran; nothing was started.
//
// Only Directus's main thread passes the gate, once. Worker threads inherit the command line's `--import`, so in
// them this module does nothing; and after "go" the `--import` of this file is taken out of process.execArgv, which
// child_process.fork and cluster pass on to the children Directus or an extension may start.
import { closeSync, readSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { isMainThread } from "node:worker_threads";

if (isMainThread) await gate();

async function gate() {
  const fd = Number(new URL(import.meta.url).searchParams.get("fd"));
  const entry = process.argv[1];
  if (!Number.isInteger(fd) || fd < 3 || !entry || !entry.endsWith("run.js")) {
    process.stderr.write(`supervisor gate: bad fd or entry (${fd}, ${entry})\n`);
    process.exit(70);
  }
  await import(new URL("./index.js", pathToFileURL(entry)).href);

  const buf = Buffer.alloc(8);
  let got = "";
  for (;;) {
    let n;
    try {
      n = readSync(fd, buf, 0, buf.length, null);
    } catch (e) {
      if (e.code === "EAGAIN") {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
        continue;
      }
      throw e;
    }
    if (n === 0) break;
    got += buf.subarray(0, n).toString("latin1");
    if (got.includes("\n")) break;
  }
  closeSync(fd);
  if (got !== "go\n") process.kill(process.pid, "SIGKILL");
  const argv = process.execArgv;
  const at = argv.findIndex((arg, i) => arg === "--import" && sameFile(argv[i + 1]));
  if (at >= 0) argv.splice(at, 2);
}

function sameFile(arg) {
  try {
    return new URL(arg).pathname === new URL(import.meta.url).pathname;
  } catch {
    return false;
  }
}
