'use strict';
// hilrun's peer for the reference AWS IoT endpoint: the AWS IoT Device SDK
// for JavaScript v1 (aws-iot-device-sdk), used unmodified through its public
// thingShadow API. It connects with a thing certificate, gets the classic
// shadow, updates its reported state and waits for a delta, printing one
// JSON line per step on stdout; cmd/hilrun TestAWSJSSDK drives the endpoint
// and reads them.
//
// usage: node peer.js HOST PORT THING CERT KEY CA
const awsIot = require('aws-iot-device-sdk');

const [host, port, thing, certPath, keyPath, caPath] = process.argv.slice(2);
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const shadows = awsIot.thingShadow({
  host, port: Number(port), clientId: thing, certPath, keyPath, caPath,
  protocol: 'mqtts', keepalive: 30, baseReconnectTimeMs: 1000, maximumReconnectTimeMs: 2000,
});

const pending = {};
let registered = false;

shadows.on('connect', () => {
  say({ ev: 'connect' });
  if (registered) return;
  registered = true;
  shadows.register(thing, { ignoreDeltas: false }, (err) => {
    if (err) { say({ ev: 'error', msg: String(err) }); process.exit(1); }
    say({ ev: 'registered' });
    pending[shadows.get(thing)] = 'get';
  });
});

shadows.on('status', (name, stat, token, doc) => {
  const op = pending[token] || 'unknown';
  delete pending[token];
  say({ ev: 'status', op, stat, version: doc && doc.version, state: doc && doc.state, code: doc && doc.code });
  if (op === 'get' && stat === 'accepted') {
    pending[shadows.update(thing, { state: { reported: { fw: '2.0', sdk: 'aws-iot-device-sdk' } } })] = 'update';
  }
});

shadows.on('delta', (name, doc) => {
  say({ ev: 'delta', version: doc.version, state: doc.state });
  shadows.end(false, () => process.exit(0));
});

shadows.on('timeout', (name, token) => say({ ev: 'timeout', op: pending[token] }));
shadows.on('error', (err) => say({ ev: 'error', msg: String(err && err.message || err) }));
shadows.on('close', () => say({ ev: 'close' }));

setTimeout(() => { say({ ev: 'error', msg: 'peer gave up after 60 s' }); process.exit(2); }, 60000).unref();
