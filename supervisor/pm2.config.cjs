// The pm2 ecosystem file the supervisor starts `pm2-runtime` with when PM2_INSTANCES is above 1 (supervisor/pm2.py).
//
// It follows the official Directus image's ecosystem.config.cjs: one app named `directus` in cluster mode that waits
// for Directus's `ready` message, with the same PM2_* variables read the same way. What differs: the Directus entry,
// its arguments and Node flags come from the supervisor's resolved Directus command (SUPERVISOR_DIRECTUS_CMD or its
// default) in SUPERVISOR_PM2_APP, deleted here so Directus never sees it; `instances` is the PM2_INSTANCES the
// supervisor validated; and cluster mode is the only mode (PM2_EXEC_MODE other than `cluster` is refused earlier).
'use strict';

const handed = process.env.SUPERVISOR_PM2_APP;
if (!handed) {
	throw new Error(
		'pm2.config.cjs is the supervisor\'s: start Directus with `python -m supervisor run` (it sets SUPERVISOR_PM2_APP)',
	);
}
delete process.env.SUPERVISOR_PM2_APP;
const app = JSON.parse(handed);

module.exports = [
	{
		name: 'directus',
		script: app.script,
		args: app.args,
		...(app.node_args.length > 0 && { node_args: app.node_args }),

		instances: app.instances,
		exec_mode: 'cluster',
		max_memory_restart: process.env.PM2_MAX_MEMORY_RESTART,

		min_uptime: process.env.PM2_MIN_UPTIME,
		listen_timeout: process.env.PM2_LISTEN_TIMEOUT,
		kill_timeout: process.env.PM2_KILL_TIMEOUT,
		wait_ready: true,
		max_restarts: process.env.PM2_MAX_RESTARTS,
		restart_delay: process.env.PM2_RESTART_DELAY ?? 0,
		autorestart: process.env.PM2_AUTO_RESTART === 'true',

		error_file: process.env.PM2_LOG_ERROR_FILE,
		out_file: process.env.PM2_LOG_OUT_FILE,
	},
];
