'use strict';
// The network environment of the shim process, not the SDK.
//
// On a real network the hub's host name resolves to the hub and port 8883
// is the hub's. On the rig the hub sits behind a fault proxy at an
// ephemeral port on 127.0.0.1 (configure hub.address). This module plays
// the part of DNS plus port forwarding for exactly one (host, port): a TCP
// connection the SDK (mqtt.js through tls.connect) opens to the hub host
// and port is dialled at the configured address instead. Everything else
// stays as the SDK made it: the TLS ServerName (SNI) and the certificate
// host check still name the hub host, and the SDK's own options (ca, cert,
// key) decide trust. No byte of the connection is touched.

const tls = require('tls');
const net = require('net');

let route = null; // {host, port, dialHost, dialPort}
let onDial = null; // observer: called for every redirected dial

function splitAddress(addr) {
  const m = /^\[(.*)\]:(\d+)$/.exec(addr) || /^([^:]*):(\d+)$/.exec(addr);
  if (!m) return null;
  return { host: m[1], port: Number(m[2]) };
}

// setRoute maps (host, port) to the dial address "h:p"; address empty =
// dial the host itself.
function setRoute(host, port, address) {
  if (!host) {
    route = null;
    return;
  }
  const d = address ? splitAddress(address) : null;
  route = { host: host.toLowerCase(), port: port || 8883, dialHost: d ? d.host : host, dialPort: d ? d.port : port || 8883 };
}

function setDialObserver(fn) {
  onDial = fn;
}

function normalise(args) {
  // tls.connect(options[, cb]) | (port[, host][, options][, cb]) | (path…)
  let options = {};
  let cb;
  const a = Array.from(args);
  if (typeof a[a.length - 1] === 'function') cb = a.pop();
  if (a.length && typeof a[0] === 'object' && a[0] !== null) {
    options = Object.assign({}, a[0]);
  } else {
    if (typeof a[0] === 'number' || (typeof a[0] === 'string' && /^\d+$/.test(a[0]))) options.port = Number(a[0]);
    if (typeof a[1] === 'string') options.host = a[1];
    const o = a.find((x, i) => i > 0 && typeof x === 'object' && x !== null);
    if (o) options = Object.assign({}, o, options);
  }
  return { options, cb };
}

const origTLSConnect = tls.connect;
tls.connect = function hilrunTLSConnect(...args) {
  const { options, cb } = normalise(args);
  const host = String(options.host || options.hostname || '').toLowerCase();
  const port = Number(options.port || 0);
  if (route && host === route.host && port === route.port) {
    const redirected = Object.assign({}, options, {
      host: route.dialHost,
      port: route.dialPort,
      servername: options.servername || route.host, // SNI names the hub host
    });
    delete redirected.hostname;
    // The certificate is checked against the hub host, not the dial address.
    const userCheck = options.checkServerIdentity || tls.checkServerIdentity;
    redirected.checkServerIdentity = (_name, cert) => userCheck(route.host, cert);
    if (onDial) onDial({ host, port, dial: `${route.dialHost}:${route.dialPort}`, tls: true });
    return cb ? origTLSConnect.call(tls, redirected, cb) : origTLSConnect.call(tls, redirected);
  }
  return origTLSConnect.apply(tls, args);
};

// Plain TCP to the hub host (the SDK never does this for mqtts; a client
// falling back to 1883 would) is routed the same way, so that the rig's
// plaintext trap sees it (hub.plainAddress).
let plainRoute = null;
function setPlainRoute(host, address) {
  const d = address ? splitAddress(address) : null;
  plainRoute = host && d ? { host: host.toLowerCase(), port: 1883, dialHost: d.host, dialPort: d.port } : null;
}
const origNetConnect = net.connect;
function hilrunNetConnect(...args) {
  const { options, cb } = normalise(args);
  const host = String(options.host || '').toLowerCase();
  const port = Number(options.port || 0);
  if (plainRoute && host === plainRoute.host && port === plainRoute.port) {
    const redirected = Object.assign({}, options, { host: plainRoute.dialHost, port: plainRoute.dialPort });
    if (onDial) onDial({ host, port, dial: `${plainRoute.dialHost}:${plainRoute.dialPort}`, tls: false });
    return cb ? origNetConnect.call(net, redirected, cb) : origNetConnect.call(net, redirected);
  }
  return origNetConnect.apply(net, args);
}
net.connect = hilrunNetConnect;
net.createConnection = hilrunNetConnect;

module.exports = { setRoute, setPlainRoute, setDialObserver, splitAddress };
