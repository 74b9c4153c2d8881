// A stand-in Directus for the PM2_INSTANCES tests: pm2's cluster mode forks Node workers, so it is a Node script.
//
//   node tests/pm2_standin.cjs start     notes `started pid=… instance=… args=…` in $STANDIN_LOG (one line per worker),
//                                        serves `pong` on $PORT (shared by the workers, as in cluster mode), tells pm2
//                                        it is ready (as Directus does), then notes each signal it gets.
// `--version` prints 12.4.0; any other command than `start` fails (exit 1), so a phase that calls it never hangs.
// On SIGINT or SIGTERM it exits by that signal, as Directus does after shutting down, unless STANDIN_IGNORE_STOP=1
// (a worker that never stops) or =hang (its event loop blocks for good: it no longer even notices that pm2-runtime
// is gone, which ends an idle cluster worker). Every other signal noted is survived. STANDIN_EXIT_AFTER_READY=n: each worker exits
// with n shortly after it is ready (Directus dying on its own).
'use strict';

const fs = require('fs');
const http = require('http');

const command = process.argv.slice(2).filter((a) => !a.endsWith('.config.cjs'));
if (command[0] === '--version') {
	console.log('12.4.0');
	process.exit(0);
}
if (!command.includes('start')) {
	console.error(`pm2_standin: only start is stood in for, not ${JSON.stringify(command)}`);
	process.exit(1);
}

const log = process.env.STANDIN_LOG || '/dev/null';
const note = (text) => fs.appendFileSync(log, `${text}\n`);

note(
	`started pid=${process.pid} instance=${process.env.NODE_APP_INSTANCE} args=${JSON.stringify(process.argv.slice(2))}` +
		` handed=${process.env.SUPERVISOR_PM2_APP === undefined ? 'no' : 'yes'}`,
);

const server = http.createServer((req, res) => res.end(`pong ${process.pid}`));
server.listen(Number(process.env.PORT || 8055), '127.0.0.1', () => {
	note(`ready pid=${process.pid}`);
	if (process.send) process.send('ready');
	if (process.env.STANDIN_EXIT_AFTER_READY) setTimeout(() => process.exit(Number(process.env.STANDIN_EXIT_AFTER_READY)), 300);
});

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR2', 'SIGWINCH']) {
	process.on(sig, () => {
		note(`signal ${sig} pid=${process.pid}`);
		if ((sig === 'SIGINT' || sig === 'SIGTERM') && process.env.STANDIN_IGNORE_STOP === 'hang') {
			Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); // blocked for good, idle
		}
		if ((sig === 'SIGINT' || sig === 'SIGTERM') && !process.env.STANDIN_IGNORE_STOP) {
			process.removeAllListeners(sig);
			process.kill(process.pid, sig);
		}
	});
}
