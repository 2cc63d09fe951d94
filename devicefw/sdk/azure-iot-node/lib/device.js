'use strict';
// The device client: every agent operation mapped onto the public API of
// the official Azure IoT device SDK for Node.js (azure-iot-device with the
// azure-iot-device-mqtt transport). The SDK's own behaviour is what crosses
// the wire: the shim never writes an MQTT packet, never retries on the
// SDK's behalf and never fills in what the SDK does not do. What the SDK's
// API cannot do is answered `unsupported`.
//
// What the shim does as the *application* (the part every SDK user writes):
// it opens one client per client.open, subscribes to C2D, registers the
// defined methods, fetches the twin once after open and listens for
// desired patches, completes every C2D message, and reports what it saw as
// agent events.

const { Client, ModuleClient, Message, SharedAccessKeyAuthenticationProvider } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
const { ExponentialBackOffWithJitter } = require('azure-iot-common');
const crypto = require('crypto');
const tls = require('tls');
const netenv = require('./netenv');

// Capabilities: exactly what the shim can do through the SDK's public API.
// clean-session: the SDK always keeps a persistent session (CleanSession 0).
// websockets (MqttWs) is wired but not declared: no spec exercises it yet.
const CAPS = ['sas', 'x509', 'modules', 'clean-session', 'c2d', 'methods', 'twin', 'pnp', 'trust-update'];

const CLOSE_TIMEOUT_MS = 10000;
const MAX_EVENT_DOC = 1500;

function errText(e) {
  if (!e) return 'no error';
  const name = e.name || e.constructor && e.constructor.name || 'Error';
  return `${name}: ${e.message || e.code || ''}`.trim();
}

function ae(code, msg) {
  const { AgentError } = require('./agent');
  return new AgentError(code, msg);
}

function sortedKeys(o) {
  return Object.keys(o || {}).sort();
}

function tokenExpiry(sas) {
  const m = /[?&]se=(\d+)/.exec('?' + String(sas || '').replace(/^SharedAccessSignature /, '').replace(/ /g, ''));
  return m ? Number(m[1]) : 0;
}

class DeviceClient {
  constructor(agent) {
    this.agent = agent;
    this.state = 'idle';
    this.reason = '';
    this.connects = 0;
    this.gen = 0;
    this.cur = null; // {gen, client, transport, twin, policy, opened, closing, attempts, module}
    this.telRef = 0;
    this.desiredVersion = 0;
    this.tokenExp = 0;
    this.seenC2D = new Map();
    netenv.setDialObserver((d) => this.onDial(d));
  }

  // --- configuration -----------------------------------------------------

  checkConfig(c) {
    const m = c.mqtt;
    if (m) {
      if (m.cleanSession === true) throw ae('unsupported', 'mqtt.cleanSession true: the SDK always connects with CleanSession 0 (azure-iot-mqtt-base: clean: false); it has no option for a clean session');
      if (m.will) throw ae('unsupported', 'mqtt.will: the SDK has no option to register an MQTT Will');
      if (m.qos !== undefined && m.qos !== null && m.qos !== 1) throw ae('unsupported', `mqtt.qos ${m.qos}: the SDK sends telemetry with QoS 1 only (sendEvent)`);
    }
  }

  snapshot() {
    const n = this.agent.nvs.data;
    const c = n.config || {};
    if (!c.hub || !c.hub.host) throw ae('bad_args', 'no hub configured (configure {"hub":{"host":...}})');
    if (!c.identity || !c.identity.deviceId) throw ae('bad_args', 'no identity configured');
    if (!c.auth) throw ae('bad_args', 'no auth configured');
    const wss = c.hub.transport === 'wss';
    const cc = {
      host: c.hub.host,
      port: c.hub.port || (wss ? 443 : 8883),
      wss,
      address: c.hub.address || '',
      plainAddress: c.hub.plainAddress || '',
      deviceId: c.identity.deviceId,
      moduleId: c.identity.moduleId || '',
      auth: c.auth.type,
      key: c.auth.key,
      ttl: c.auth.tokenTtlS || 3600,
      renewFraction: c.auth.renewFraction || 0.8,
      keepAlive: (c.mqtt && c.mqtt.keepAliveS) || 0,
      retry: c.retry || {},
      modelId: c.modelId || '',
      trust: (n.trust || []).slice(),
      certPem: n.certPem,
      keyPem: n.keyPem,
    };
    if (cc.auth === 'x509' && !(cc.certPem && cc.keyPem)) throw ae('bad_args', 'auth x509 needs a device certificate (cert.set)');
    if (cc.auth === 'x509' && cc.moduleId) throw ae('unsupported', 'a module with X.509: the SDK\'s ModuleClient.fromConnectionString accepts SAS only ("ModuleClient only supports SAS Token authentication")');
    // The SDK dials mqtts://<HostName> (port 8883) or wss://<HostName>:443.
    const sdkPort = wss ? 443 : 8883;
    if (cc.port !== sdkPort) throw ae('unsupported', `hub.port ${cc.port}: the SDK dials port ${sdkPort} for ${wss ? 'wss' : 'mqtts'}`);
    return cc;
  }

  status() {
    const s = { state: this.state, connects: this.connects, desiredVersion: this.desiredVersion, clockUnixMs: Date.now(), clockSynced: true };
    if (this.reason) s.reason = this.reason;
    if (this.tokenExp) s.tokenExpires = this.tokenExp;
    return s;
  }

  setState(ev) {
    this.state = ev.state;
    this.reason = ev.reason || '';
    this.agent.emit('conn', ev);
  }

  live(cur) {
    return cur && this.cur === cur && !cur.closing;
  }

  // --- connection --------------------------------------------------------

  onDial(d) {
    const cur = this.cur;
    if (!this.live(cur) || !d.tls) return;
    cur.attempts++;
    if (this.state !== 'connecting') this.setState({ state: 'connecting', attempt: cur.attempts });
  }

  open() {
    const cc = this.snapshot();
    if (this.cur && !this.cur.closing && !this.cur.dead) return;
    const gen = ++this.gen;
    netenv.setRoute(cc.host, cc.port, cc.address);
    netenv.setPlainRoute(cc.host, cc.plainAddress);
    const cur = { gen, cc, client: null, transport: null, twin: null, opened: false, closing: false, dead: false, attempts: 0, module: !!cc.moduleId, methods: new Set(), getting: 0 };
    const self = this;
    const Base = cc.wss ? MqttWs : Mqtt;
    // The transport the SDK constructs, kept so the shim can observe its
    // connection events (connected/disconnect); it is the SDK's own object.
    function ObservedTransport(authProvider) {
      const t = new Base(authProvider);
      cur.transport = t;
      return t;
    }
    let cs = `HostName=${cc.host};DeviceId=${cc.deviceId}`;
    if (cc.moduleId) cs += `;ModuleId=${cc.moduleId}`;
    const Ctor = cc.moduleId ? ModuleClient : Client;
    let client;
    if (cc.auth === 'sas') {
      cs += `;SharedAccessKey=${cc.key}`;
      const margin = Math.max(1, Math.round(cc.ttl * (1 - cc.renewFraction)));
      const ap = SharedAccessKeyAuthenticationProvider.fromConnectionString(cs, cc.ttl, margin);
      ap.on('newTokenAvailable', (creds) => {
        if (!this.live(cur)) return;
        const se = tokenExpiry(creds && creds.sharedAccessSignature);
        const first = !this.tokenExp || !cur.sawToken;
        cur.sawToken = true;
        if (se) this.tokenExp = se;
        if (!first) this.agent.emit('creds.renewed', { kind: 'sas-renewal', se: se || undefined });
      });
      client = Ctor.fromAuthenticationProvider(ap, ObservedTransport);
    } else {
      cs += ';x509=true';
      client = Ctor.fromConnectionString(cs, ObservedTransport);
    }
    cur.client = client;
    this.cur = cur;

    const opts = {};
    // Configured roots are added to Node's bundled roots, not put in their
    // place: an application adding its root keeps the default trust.
    if (cc.trust.length) opts.ca = trustedCA(cc.trust);
    if (cc.keepAlive) opts.keepalive = cc.keepAlive;
    if (cc.modelId) opts.modelId = cc.modelId;
    if (cc.auth === 'x509') {
      opts.cert = cc.certPem;
      opts.key = cc.keyPem;
    }
    cur.opts = opts;
    const policy = new ExponentialBackOffWithJitter();
    if (cc.retry.initialMs) {
      policy.normalParameters.c = cc.retry.initialMs;
      policy.normalParameters.cMin = cc.retry.initialMs;
    }
    if (cc.retry.maxMs) policy.normalParameters.cMax = Math.max(cc.retry.maxMs, policy.normalParameters.cMin);
    client.setRetryPolicy(policy);
    cur.policy = policy;

    cur.transport.on('connected', () => {
      if (!this.live(cur) || !cur.opened || !cur.started) return;
      cur.dead = false; // the SDK came back by itself after giving up on one path
      this.connects++;
      cur.attempts = 0;
      this.setState({ state: 'connected' });
    });
    cur.transport.on('disconnect', (err) => {
      if (!this.live(cur)) return;
      if (err && policy.shouldRetry(err)) this.setState({ state: 'backoff', reason: errText(err) });
      else this.setState({ state: err ? 'stopped' : 'idle', reason: errText(err) });
    });
    client.on('disconnect', (res) => {
      // The SDK gave up (not retrying): after the transport's event.
      setImmediate(() => {
        if (!this.live(cur)) return;
        const why = res && res.reason ? errText(res.reason) : 'disconnected';
        cur.dead = true;
        this.setState({ state: 'stopped', reason: why });
      });
    });
    client.on('error', (err) => {
      if (this.live(cur)) this.agent.log('W', `client error: ${errText(err)}`);
    });

    this.setState({ state: 'connecting', attempt: 1 });
    cur.attempts = 0;
    client.setOptions(opts, (err) => {
      if (!this.live(cur)) return;
      if (err) {
        cur.dead = true;
        this.setState({ state: 'stopped', reason: `setOptions: ${errText(err)}` });
        return;
      }
      client.open((err, result) => {
        if (!this.live(cur)) return;
        if (err) {
          cur.dead = true;
          this.setState({ state: 'stopped', reason: errText(err) });
          return;
        }
        cur.opened = true;
        this.connects++;
        cur.attempts = 0;
        this.subscribe(cur);
        const sp = result && result.transportObj && result.transportObj.sessionPresent;
        const ev = { state: 'connected' };
        if (sp) ev.sessionPresent = true;
        // "connected" once the application's start-up is on the wire: the
        // SDK's SUBSCRIBEs (C2D, methods) went out before the twin GETs, so
        // their SUBACKs precede the GET answers (the SDK reports no SUBACK).
        let reported = false;
        this.fetchTwin(cur, () => {
          if (reported || !this.live(cur)) return;
          reported = true;
          cur.started = true;
          this.setState(ev);
        });
      });
    });
  }

  subscribe(cur) {
    const client = cur.client;
    if (!cur.module) client.on('message', (msg) => this.onC2D(cur, msg));
    for (const name of Object.keys(this.agent.nvs.data.methods || {})) this.registerMethod(cur, name);
  }

  // fetchTwin is the application's twin start-up with this SDK: getTwin()
  // gives the Twin object (the SDK sends its GET before it subscribes to
  // desired patches), the desired listener makes the SDK subscribe, and a
  // second get() (queued behind that SUBSCRIBE) closes the window in which
  // a patch could have been missed. twin.resync reports the second GET.
  fetchTwin(cur, started) {
    cur.getting++;
    cur.client.getTwin((err, twin) => {
      if (!this.live(cur)) return;
      if (err) {
        cur.getting--;
        this.agent.log('E', `twin GET after open: ${errText(err)}`);
        started();
        return;
      }
      cur.twin = twin;
      this.listenDesired(cur, twin);
      twin.get((err2) => {
        cur.getting--;
        if (!this.live(cur)) return;
        started();
        if (err2) {
          this.agent.log('E', `twin GET after subscribing: ${errText(err2)}`);
          return;
        }
        this.takeTwin(twin);
        this.agent.emit('twin.resync', { desiredVersion: verOf(twin.properties.desired), reportedVersion: verOf(twin.properties.reported) });
      });
    });
  }

  listenDesired(cur, twin) {
    // The SDK also fires this event for GET results and, on registration,
    // for the desired state it already holds: those are not patches.
    twin.on('properties.desired', (patch) => {
      if (!this.live(cur) || cur.getting > 0) return;
      this.onDesired(cur, twin, patch);
    });
  }

  // trustChanged hands the SDK the configured roots again (trust.add,
  // trust.clear while a client is open): its next connection uses them.
  trustChanged() {
    const cur = this.cur;
    if (!cur || cur.closing || !cur.opts) return;
    const trust = this.agent.nvs.data.trust || [];
    if (!trust.length && !cur.opts.ca) return; // the SDK's default trust is in force already
    // Without configured roots this is the bundled roots alone: the default trust.
    cur.opts = Object.assign({}, cur.opts, { ca: trustedCA(trust) });
    cur.client.setOptions(cur.opts, (err) => {
      if (err) this.agent.log('W', `setOptions (trust): ${errText(err)}`);
    });
  }

  takeTwin(twin) {
    this.desiredVersion = verOf(twin.properties.desired);
  }

  async close(graceful) {
    const cur = this.cur;
    if (!cur) return;
    if (!graceful) {
      throw ae('unsupported', 'client.close without DISCONNECT: the SDK\'s close() always ends the connection with MQTT DISCONNECT');
    }
    cur.closing = true;
    this.cur = null;
    await new Promise((resolve) => {
      const t = setTimeout(() => {
        this.agent.log('W', `client.close did not complete within ${CLOSE_TIMEOUT_MS} ms`);
        resolve();
      }, CLOSE_TIMEOUT_MS);
      try {
        cur.client.close(() => {
          clearTimeout(t);
          resolve();
        });
      } catch (e) {
        clearTimeout(t);
        this.agent.log('W', `client.close: ${errText(e)}`);
        resolve();
      }
    });
    this.setState({ state: 'idle', reason: 'client.close' });
  }

  requireOpen() {
    const cur = this.cur;
    if (!cur || !cur.opened || cur.dead) throw ae('not_connected', `no hub connection (state ${this.state})`);
    return cur;
  }

  // --- telemetry ---------------------------------------------------------

  sendTelemetry(a) {
    const cfg = this.agent.nvs.data.config || {};
    let qos = a.qos;
    if (qos === undefined || qos === null) qos = cfg.mqtt && cfg.mqtt.qos !== undefined && cfg.mqtt.qos !== null ? cfg.mqtt.qos : 1;
    if (qos !== 0 && qos !== 1) throw ae('bad_args', `qos ${qos}: IoT Hub takes 0 or 1`);
    if (qos === 0) throw ae('unsupported', 'telemetry with QoS 0: the SDK\'s sendEvent always publishes with QoS 1');
    if (a.ctime) throw ae('unsupported', 'ctime: the SDK\'s Message has no creation-time system property ($.ctime); sendEvent never sends one');
    let payload;
    if (a.gen) {
      if (typeof a.gen.size !== 'number' || a.gen.size < 0 || a.gen.size > 4 * 262144) throw ae('bad_args', `gen.size ${a.gen.size} outside 0..${4 * 262144}`);
      payload = require('./frame').generate(a.gen.size, a.gen.seed >>> 0);
    } else {
      payload = Buffer.from(typeof a.payload === 'string' ? a.payload : '', 'utf8');
    }
    const cur = this.requireOpen();
    const msg = new Message(payload);
    let size = payload.length;
    if (a.messageId) {
      msg.messageId = a.messageId;
      size += Buffer.byteLength(a.messageId);
    }
    if (a.contentType) {
      msg.contentType = a.contentType;
      msg.contentEncoding = 'utf-8';
      size += Buffer.byteLength(a.contentType) + 5;
    }
    for (const k of sortedKeys(a.props)) {
      msg.properties.add(k, String(a.props[k]));
      size += k.startsWith('$.') ? Buffer.byteLength(String(a.props[k])) : Buffer.byteLength(k) + Buffer.byteLength(String(a.props[k]));
    }
    const ref = ++this.telRef;
    const res = { ref, acked: false, size };
    return new Promise((resolve) => {
      cur.client.sendEvent(msg, (err) => {
        if (!err) {
          const ack = { ref, acked: true, size };
          if (this.cur === cur) this.agent.emit('telemetry.acked', ack);
          if (a.wait) resolve(ack);
        } else if (a.wait) {
          resolve({ ref, acked: false, size, error: errText(err) });
        } else if (this.cur === cur) {
          // Nobody waits on this send: the SDK's failure callback is the
          // application's only notice (RECON-005, PROTOCOL.md §5).
          this.agent.emit('telemetry.acked', { ref, acked: false, size, error: errText(err) });
        }
      });
      if (!a.wait) resolve(res);
    });
  }

  // --- C2D ---------------------------------------------------------------

  onC2D(cur, msg) {
    if (!this.live(cur)) return;
    const payload = Buffer.isBuffer(msg.data) ? msg.data : Buffer.from(msg.data === undefined ? '' : String(msg.data));
    const props = {};
    const sys = { messageId: '$.mid', correlationId: '$.cid', to: '$.to', userId: '$.uid', contentType: '$.ct', contentEncoding: '$.ce', expiryTimeUtc: '$.exp' };
    for (const [field, name] of Object.entries(sys)) if (msg[field] !== undefined && msg[field] !== null && msg[field] !== '') props[name] = String(msg[field]);
    for (const p of msg.properties && msg.properties.propertyList || []) props[p.key] = String(p.value);
    const ev = {
      topic: '', // the SDK does not expose the topic of a message
      props,
      size: payload.length,
      sha256: crypto.createHash('sha256').update(payload).digest('hex'),
    };
    if (payload.length) ev.payload = payload.subarray(0, 512).toString('utf8');
    const mid = msg.messageId;
    if (mid) {
      if (this.seenC2D.has(mid)) ev.duplicate = true;
      else {
        this.seenC2D.set(mid, true);
        if (this.seenC2D.size > 512) this.seenC2D.delete(this.seenC2D.keys().next().value);
      }
    }
    this.agent.emit('c2d', ev);
    cur.client.complete(msg, (err) => {
      if (err) this.agent.log('W', `C2D complete: ${errText(err)}`);
    });
  }

  // --- twin --------------------------------------------------------------

  onDesired(cur, twin, patch) {
    const v = verOf(patch);
    // The SDK merges every desired patch into twin.properties.desired as it
    // arrives; it keeps no version order of its own.
    const ev = { version: v, applied: true };
    const pj = JSON.stringify(patch);
    if (pj && pj.length <= MAX_EVENT_DOC) ev.patch = stripVersion(patch);
    const dj = JSON.stringify(twin.properties.desired);
    if (dj && dj.length <= MAX_EVENT_DOC) ev.desired = stripVersion(twin.properties.desired);
    if (v) this.desiredVersion = v;
    this.agent.emit('twin.desired', ev);
  }

  async twinGet() {
    const cur = this.requireOpen();
    const twin = await new Promise((resolve, reject) => {
      cur.getting++;
      const done = (err, t) => {
        cur.getting--;
        if (err) reject(ae(err.name === 'TimeoutError' || err.name === 'OperationTimeoutError' ? 'timeout' : 'rejected', `twin GET: ${errText(err)}`));
        else resolve(t);
      };
      if (cur.twin) cur.twin.get(done);
      else cur.client.getTwin(done);
    });
    if (!cur.twin && this.live(cur)) {
      cur.twin = twin;
      cur.getting++;
      this.listenDesired(cur, twin);
      setImmediate(() => cur.getting--);
    }
    this.takeTwin(twin);
    return {
      desired: stripVersion(twin.properties.desired),
      reported: stripVersion(twin.properties.reported),
      desiredVersion: verOf(twin.properties.desired),
      reportedVersion: verOf(twin.properties.reported),
      // The SDK's get() resolves on any answer without an errorCode body
      // and does not surface the status; 0 = not known to the device.
      status: 0,
    };
  }

  async twinReport(a) {
    if (!a.patch || typeof a.patch !== 'object' || Array.isArray(a.patch)) throw ae('bad_args', 'twin.report needs a patch object');
    if (a.spread) {
      // Generated members (agentproto.Spread): a patch larger than a frame.
      const sp = a.spread;
      const { generate } = require('./frame');
      for (let i = 0; i < (sp.members | 0); i++) {
        const n = (sp.len | 0) + (i < (sp.extra | 0) ? 1 : 0);
        a.patch[(sp.prefix || '') + String(i).padStart(3, '0')] = generate(n, i + 1).toString('latin1');
      }
    }
    const cur = this.requireOpen();
    let twin = cur.twin;
    if (!twin) {
      twin = await new Promise((resolve, reject) => cur.client.getTwin((err, t) => (err ? reject(ae('rejected', `twin GET: ${errText(err)}`)) : resolve(t))));
      cur.twin = cur.twin || twin;
    }
    await new Promise((resolve, reject) => {
      twin.properties.reported.update(a.patch, (err) => (err ? reject(ae('rejected', `reported update: ${errText(err)}`)) : resolve()));
    });
    // update() calls back without the answer's status or $version.
    return { status: 0, version: 0 };
  }

  // --- methods -----------------------------------------------------------

  methodDefined(name) {
    const cur = this.cur;
    if (this.live(cur) && cur.opened) this.registerMethod(cur, name);
  }

  registerMethod(cur, name) {
    if (cur.methods.has(name)) return;
    cur.methods.add(name);
    const handler = (req, resp) => this.onMethod(cur, name, req, resp);
    if (cur.module) cur.client.onMethod(name, handler);
    else cur.client.onDeviceMethod(name, handler);
  }

  onMethod(cur, name, req, resp) {
    const b = (this.agent.nvs.data.methods || {})[name];
    const size = req.payload === undefined ? 0 : Buffer.byteLength(JSON.stringify(req.payload));
    const ev = { name: req.methodName || name, rid: req.requestId, status: 0, size };
    if (!b || b.silent) {
      // No behaviour any more (method.clear): the SDK has no way to
      // unregister a handler, so the call is left unanswered.
      this.agent.emit('method.invoked', ev);
      return;
    }
    let status = b.status || 200;
    let payload = b.payload ? JSON.parse(b.payload) : undefined;
    if (b.gen && b.gen.size >= 2) {
      // The SDK JSON-encodes the payload: a string of size-2 characters
      // becomes the quoted body of exactly gen.size bytes.
      payload = require('./frame').generate(b.gen.size - 2, b.gen.seed).toString('latin1');
    }
    if (b.fail) {
      if (status < 400) status = 500;
      payload = { error: 'handler failed' };
    }
    const answer = () => {
      if (!this.live(cur)) return;
      const cb = (err) => {
        if (err) {
          this.agent.log('W', `method ${name} response not sent: ${errText(err)}`);
          return;
        }
        ev.status = status;
        this.agent.emit('method.invoked', ev);
      };
      if (payload === undefined) resp.send(status, cb);
      else resp.send(status, payload, cb);
    };
    if (b.delayMs > 0) setTimeout(answer, b.delayMs);
    else answer();
  }

  // --- credentials -------------------------------------------------------

  async rotate(a) {
    const n = this.agent.nvs.data;
    let kind;
    if (a.key) {
      if (!/^[A-Za-z0-9+/]+={0,2}$/.test(a.key)) throw ae('bad_args', 'creds.rotate key must be base64');
      if (!n.config.auth || n.config.auth.type !== 'sas') throw ae('bad_args', 'creds.rotate key needs auth type sas');
      n.config.auth.key = a.key;
      kind = 'key-rotated';
    } else if (a.pem) {
      throw ae('unsupported', 'creds.rotate with a certificate: cert-rotation is not declared by this board');
    } else {
      throw ae('bad_args', 'creds.rotate needs key, or pem and keyPem');
    }
    this.agent.nvs.save();
    this.agent.emit('creds.renewed', { kind });
    if (this.cur) {
      // A new client with the new connection string (the SDK's key-based
      // clients take their key once, at construction).
      await this.close(true);
      this.open();
    }
    return null;
  }
}

function verOf(section) {
  return section && typeof section.$version === 'number' ? section.$version : 0;
}

function stripVersion(o) {
  if (!o || typeof o !== 'object') return {};
  const out = {};
  for (const k of Object.keys(o)) {
    if (k === '$version' || typeof o[k] === 'function') continue;
    out[k] = o[k];
  }
  return out;
}

// trustedCA is the SDK's ca option for configured roots: Node's bundled
// roots (the trust the SDK has without a ca) followed by the configured
// ones, as one PEM string, so the device trusts both.
function trustedCA(configured) {
  return tls.rootCertificates.concat(configured).join('\n');
}

module.exports = { DeviceClient, CAPS };
