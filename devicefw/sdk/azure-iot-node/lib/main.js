'use strict';

function usage(msg) {
  process.stderr.write(`hilfw-node: ${msg}\nusage: hilfw-node --uart PATH --state DIR [--board NAME]\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const o = { board: 'sim' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const m = /^--(uart|state|board|defect)(?:=(.*))?$/.exec(a);
    if (!m) usage(`unexpected argument ${JSON.stringify(a)}`);
    const v = m[2] !== undefined ? m[2] : argv[++i];
    if (v === undefined) usage(`${a} needs a value`);
    if (m[1] === 'defect') usage(`--defect ${v}: this firmware has no defect switches (the SDK is judged as it is)`);
    o[m[1]] = v;
  }
  if (!o.uart || !o.state) usage('--uart and --state are required');
  return o;
}

function main(argv) {
  const opts = parseArgs(argv);
  // The SDK and mqtt.js log through `debug` when DEBUG is set, connection
  // details among it; secrets never go to a log, so the shim switches it off.
  delete process.env.DEBUG;
  require('./netenv'); // before the SDK dials anything
  const { Agent } = require('./agent');
  const agent = new Agent(opts);
  process.on('uncaughtException', (e) => {
    // An exception thrown inside the SDK (or the shim) is logged on the
    // console, as a firmware's fault handler would, and the device goes on.
    agent.log('E', `uncaught exception: ${e && e.stack ? e.stack.split('\n').slice(0, 4).join(' | ') : e}`);
  });
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
  agent.run();
}

module.exports = { main, parseArgs };
