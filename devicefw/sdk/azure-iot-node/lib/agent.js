'use strict';
// The agent of devicefw/PROTOCOL.md around the official Azure IoT device
// SDK for Node.js: framing, hello, NVS (state directory), dispatch. The
// device client itself is lib/device.js, which uses only the SDK's public
// API.

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const tls = require('tls');
const { encode, split, MAX_FRAME } = require('./frame');
const { openUART } = require('./uart');

const SHIM = require('../package.json');
const SDK = require('azure-iot-device/package.json');
const SDK_MQTT = require('azure-iot-device-mqtt/package.json');

const FIRMWARE = 'hilfw-azure-iot-node';
const EXIT_RESET = 3;

// Errors of PROTOCOL.md §2.1.
class AgentError extends Error {
  constructor(code, msg) {
    super(msg);
    this.code = code;
  }
}
const agentError = (code, msg) => new AgentError(code, msg);

function buildHash() {
  // The shim's own code, hashed: which shim judged the SDK.
  const h = crypto.createHash('sha256');
  const dir = __dirname;
  for (const f of fs.readdirSync(dir).sort()) h.update(f).update(fs.readFileSync(path.join(dir, f)));
  h.update(fs.readFileSync(path.join(dir, '..', 'package-lock.json')));
  return h.digest('hex').slice(0, 12);
}

// NVS: configuration, credentials, trust, method behaviours. Holds
// secrets: 0600, never printed.
class NVS {
  constructor(dir) {
    this.file = path.join(dir, 'nvs.json');
    this.data = { config: {}, trust: [], methods: {} };
    try {
      const d = JSON.parse(fs.readFileSync(this.file, 'utf8'));
      this.data = Object.assign(this.data, d);
    } catch (e) {
      if (e.code !== 'ENOENT') process.stderr.write(`${FIRMWARE}: NVS unreadable, starting blank: ${e.message}\n`);
    }
  }
  save() {
    const tmp = this.file + '.tmp';
    fs.writeFileSync(tmp, JSON.stringify(this.data), { mode: 0o600 });
    fs.renameSync(tmp, this.file);
  }
}

function bumpBootCount(dir) {
  const f = path.join(dir, 'bootcount');
  let n = 0;
  try {
    n = parseInt(fs.readFileSync(f, 'utf8').trim(), 10) || 0;
  } catch (_) {
    /* first boot */
  }
  n++;
  fs.writeFileSync(f, `${n}\n`, { mode: 0o600 });
  return n;
}

class Agent {
  constructor(opts) {
    this.opts = opts;
    this.start = process.hrtime.bigint();
    this.seq = 0;
    fs.mkdirSync(opts.state, { recursive: true, mode: 0o700 });
    this.nvs = new NVS(opts.state);
    this.boot = bumpBootCount(opts.state);
    this.build = buildHash();
    const { DeviceClient, CAPS } = require('./device');
    this.caps = CAPS;
    this.uart = openUART(opts.uart, (line) => this.onLine(line), (err) => this.onUARTEnd(err));
    this.device = new DeviceClient(this);
  }

  uptime() {
    return Number((process.hrtime.bigint() - this.start) / 1000000n);
  }

  hello() {
    return {
      proto: 1,
      fw: FIRMWARE,
      fwVersion: SHIM.version,
      build: this.build,
      client: SDK.name,
      clientVersion: SDK.version,
      board: this.opts.board,
      caps: this.caps.slice(),
      boot: this.boot,
      maxFrame: MAX_FRAME,
      transport: `${SDK_MQTT.name} ${SDK_MQTT.version}`,
      // A twin request waits for the SDK's fixed operation timeout
      // (azure-iot-device internal_client.js MAX_OPERATION_TIMEOUT = 240000);
      // the public API has no setting for it, so a configured
      // twin.timeoutMs is kept but not applied (TWIN-019).
      twinTimeoutFixedMs: 240000,
      // sendEvent runs in a RetryOperation bounded by the same constant
      // (internal_client.js: new RetryOperation('sendEvent', …,
      // this._maxOperationTimeout)), which no public API sets (RECON-005).
      operationTimeout: { defaultMs: 240000 },
    };
  }

  // The one writer: every frame and console line goes through writeLine.
  writeLine(buf) {
    try {
      this.uart.write(buf);
    } catch (e) {
      process.stderr.write(`${FIRMWARE}: UART write: ${e.message}\n`);
    }
  }

  sendFrame(f) {
    let line;
    try {
      line = encode(f);
    } catch (e) {
      if (f.t === 'evt') {
        this.log('E', `event ${f.ev} dropped: ${e.message}`);
        return;
      }
      line = encode({ t: 'res', id: f.id, err: { code: 'internal', msg: `response too large: ${e.message}` } });
    }
    this.writeLine(line);
  }

  emit(ev, data) {
    this.seq++;
    const f = { t: 'evt', seq: this.seq, up: this.uptime(), ev };
    if (data !== undefined) f.data = data;
    this.sendFrame(f);
  }

  // log writes an ESP-IDF-style console line (never a secret).
  log(level, msg) {
    this.writeLine(Buffer.from(`${level} (${this.uptime()}) ${FIRMWARE}: ${String(msg).replace(/[\r\n]+/g, ' ')}\r\n`));
  }

  run() {
    this.log('I', `boot ${this.boot}: ${FIRMWARE} ${SHIM.version} with ${SDK.name} ${SDK.version} (${SDK_MQTT.name} ${SDK_MQTT.version}) on board ${this.opts.board}`);
    this.emit('hello', this.hello());
  }

  onUARTEnd(err) {
    process.stderr.write(`${FIRMWARE}: uart: ${err && err.message}\n`);
    process.exit(1);
  }

  onLine(line) {
    const { frame, error } = split(line);
    if (!frame && !error) return; // console input, not for the agent
    if (error) {
      this.sendFrame({ t: 'res', id: 0, err: { code: 'bad_frame', msg: error.message } });
      return;
    }
    if (frame.t !== 'req') {
      this.sendFrame({ t: 'res', id: frame.id || 0, err: { code: 'bad_frame', msg: `device accepts only requests, got "${frame.t}"` } });
      return;
    }
    this.serve(frame);
  }

  async serve(f) {
    const id = typeof f.id === 'number' ? f.id : 0;
    let res;
    try {
      const args = f.args === undefined || f.args === null ? {} : f.args;
      if (typeof args !== 'object' || Array.isArray(args)) throw agentError('bad_args', 'args must be an object');
      const data = await this.dispatch(f.op, args);
      res = { t: 'res', id, ok: true };
      if (data !== undefined && data !== null) res.data = data;
    } catch (e) {
      if (e instanceof AgentError) res = { t: 'res', id, err: { code: e.code, msg: e.message } };
      else res = { t: 'res', id, err: { code: 'internal', msg: String((e && e.message) || e) } };
    }
    this.sendFrame(res);
    if (f.op === 'reset' && res.ok) {
      setTimeout(() => process.exit(EXIT_RESET), 20);
    }
  }

  async dispatch(op, a) {
    const d = this.device;
    switch (op) {
      case 'hello':
        return this.hello();
      case 'echo':
        if (typeof a.data !== 'string' && a.data !== undefined) throw agentError('bad_args', 'echo.data must be a string');
        return { data: a.data === undefined ? '' : a.data };
      case 'configure':
        this.configure(a);
        return d.status();
      case 'status':
        return d.status();
      case 'trust.clear':
        this.nvs.data.trust = [];
        this.nvs.save();
        d.trustChanged();
        return null;
      case 'trust.add': {
        if (typeof a.pem !== 'string') throw agentError('bad_args', 'trust.add needs {pem}');
        const certs = parsePEMCerts(a.pem);
        if (certs.length === 0) throw agentError('bad_args', 'trust.add needs a PEM certificate');
        for (const c of certs) this.nvs.data.trust.push(c.toString());
        this.nvs.save();
        d.trustChanged();
        return { roots: this.nvs.data.trust.length };
      }
      case 'trust.list': {
        // Every root the SDK's connection accepts: the configured ones and
        // Node's bundled roots (tls.rootCertificates), which the shim hands
        // the SDK beside them. {sha256: [...]} narrows the answer to those
        // fingerprints (the whole bundle does not fit one frame).
        if (a.sha256 !== undefined && !(Array.isArray(a.sha256) && a.sha256.every((f) => typeof f === 'string'))) {
          throw agentError('bad_args', 'trust.list: sha256 must be a list of hex fingerprints');
        }
        const want = a.sha256 && a.sha256.length ? new Set(a.sha256.map((f) => f.toUpperCase())) : null;
        const roots = this.nvs.data.trust.map((p) => describeRoot(p, 'configured'))
          .concat(factoryRoots())
          .filter((r) => !want || want.has(r.sha256));
        return { roots };
      }
      case 'cert.set': {
        if (a.slot) throw agentError('unsupported', `cert.set slot "${a.slot}": the SDK's X.509 options hold one device certificate; it has no secondary certificate to fall back to`);
        if (typeof a.pem !== 'string' || typeof a.keyPem !== 'string') throw agentError('bad_args', 'cert.set needs {pem, keyPem}');
        checkKeyPair(a.pem, a.keyPem);
        this.nvs.data.certPem = a.pem;
        this.nvs.data.keyPem = a.keyPem;
        this.nvs.save();
        return null;
      }
      case 'client.open':
        d.open();
        return d.status();
      case 'client.close':
        await d.close(a.graceful !== false);
        return d.status();
      case 'telemetry.send':
        return d.sendTelemetry(a);
      case 'twin.get':
        return d.twinGet();
      case 'twin.report':
        return d.twinReport(a);
      case 'method.define': {
        if (typeof a.name !== 'string' || a.name === '') throw agentError('bad_args', 'method.define needs a name (or "*")');
        if (a.payload) {
          try {
            JSON.parse(a.payload);
          } catch (_) {
            throw agentError('bad_args', 'method payload must be JSON text');
          }
        }
        if (a.name === '*') {
          throw agentError('unsupported', 'method.define "*": the SDK registers method handlers by exact name only (onDeviceMethod); it has no catch-all handler');
        }
        this.nvs.data.methods[a.name] = {
          name: a.name, status: a.status | 0, payload: a.payload || '', delayMs: a.delayMs | 0, fail: !!a.fail, silent: !!a.silent,
          // A generated body (a JSON string of gen.size bytes) too large for a frame.
          gen: a.gen && typeof a.gen.size === 'number' ? { size: a.gen.size, seed: a.gen.seed >>> 0 } : undefined,
        };
        this.nvs.save();
        d.methodDefined(a.name);
        return null;
      }
      case 'method.clear':
        this.nvs.data.methods = {};
        this.nvs.save();
        return null;
      case 'creds.rotate':
        return d.rotate(a);
      case 'clock.get':
        return { unixMs: Date.now(), synced: true };
      case 'clock.set': {
        if (typeof a.unixMs !== 'number') throw agentError('bad_args', 'clock.set needs {unixMs}');
        // The SDK signs tokens and Node checks certificates with the host's
        // system clock (Date.now()); this board has no RTC of its own to set.
        if (Math.abs(a.unixMs - Date.now()) > 10000) {
          throw agentError('unsupported', "this board's clock is the host's system clock (the SDK uses Date.now()); it cannot be set away from true time");
        }
        return { unixMs: Date.now(), synced: true };
      }
      case 'reset':
        return null;
      default:
        throw agentError('unknown_op', `operation "${op}" is not implemented by ${FIRMWARE}`);
    }
  }

  configure(c) {
    const cur = this.nvs.data.config;
    if (c.defects && c.defects.length) throw agentError('bad_args', `${FIRMWARE} has no defect switches (the SDK is judged as it is)`);
    if (c.identity !== undefined) {
      if (!c.identity || typeof c.identity.deviceId !== 'string' || c.identity.deviceId === '') throw agentError('bad_args', 'identity.deviceId is required');
    }
    if (c.auth !== undefined) {
      const au = c.auth || {};
      if (au.type === 'sas') {
        if (typeof au.key !== 'string' || au.key === '' || !/^[A-Za-z0-9+/]*={0,2}$/.test(au.key)) throw agentError('bad_args', 'auth.key must be a base64 SAS key');
      } else if (au.type !== 'x509') {
        throw agentError('bad_args', `auth.type "${au.type}": want sas or x509`);
      }
      if (au.renewFraction !== undefined && (au.renewFraction < 0 || au.renewFraction >= 1)) throw agentError('bad_args', 'auth.renewFraction must be in [0,1)');
    }
    if (c.hub && c.hub.transport && c.hub.transport !== 'mqtts' && c.hub.transport !== 'wss') throw agentError('bad_args', `hub.transport "${c.hub.transport}": want mqtts or wss`);
    this.device.checkConfig(c); // what the SDK cannot do: unsupported
    for (const k of ['hub', 'identity', 'auth', 'mqtt', 'retry', 'wifi', 'sntp', 'twin']) {
      if (c[k] !== undefined && c[k] !== null) cur[k] = c[k];
    }
    if (c.modelId) cur.modelId = c.modelId;
    this.nvs.save();
  }
}

function parsePEMCerts(pem) {
  const out = [];
  const re = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;
  let m;
  while ((m = re.exec(pem))) {
    try {
      out.push(new crypto.X509Certificate(m[0]));
    } catch (_) {
      /* not a certificate */
    }
  }
  return out;
}

function describeRoot(pem, source) {
  const c = new crypto.X509Certificate(pem);
  // RFC 4514 order: most specific first, comma separated.
  const subject = c.subject.split('\n').filter(Boolean).reverse().join(',');
  return { subject, sha256: c.fingerprint256.replace(/:/g, '').toUpperCase(), source };
}

// factoryRoots describes Node's bundled roots (tls.rootCertificates): the
// trust the SDK has when the application gives it no ca, kept beside the
// configured roots when it does.
let factoryCache = null;
function factoryRoots() {
  if (!factoryCache) factoryCache = tls.rootCertificates.map((p) => describeRoot(p, 'factory'));
  return factoryCache;
}

function checkKeyPair(pem, keyPem) {
  const certs = parsePEMCerts(pem);
  if (certs.length === 0) throw agentError('bad_args', 'cert.set: no PEM certificate');
  let key;
  try {
    key = crypto.createPrivateKey(keyPem);
  } catch (e) {
    throw agentError('bad_args', `cert.set: key: ${e.message}`);
  }
  if (!certs[0].checkPrivateKey(key)) throw agentError('bad_args', 'cert.set: the key does not match the certificate');
}

module.exports = { Agent, AgentError, agentError, parsePEMCerts, FIRMWARE, EXIT_RESET };
