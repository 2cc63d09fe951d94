'use strict';
// The UART: the pty slave the virtual board hands over with --uart. It is
// opened twice (O_NOCTTY, so it never becomes the controlling terminal): a
// tty.ReadStream for input, in raw mode (no echo, no line editing, no CR/LF
// translation, as a UART is), and a plain descriptor for synchronous
// writes, so that every frame leaves in one piece and in order (one writer).

const fs = require('fs');
const tty = require('tty');

function openUART(path, onLine, onEnd) {
  const rfd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_NOCTTY);
  if (!tty.isatty(rfd)) {
    fs.closeSync(rfd);
    throw new Error(`${path} is not a terminal (the virtual board passes a pty slave)`);
  }
  const input = new tty.ReadStream(rfd);
  input.setRawMode(true);
  const wfd = fs.openSync(path, fs.constants.O_WRONLY | fs.constants.O_NOCTTY);

  let pending = [];
  let pendingLen = 0;
  const MAX_LINE = 4096 + 1;
  input.on('data', (chunk) => {
    let start = 0;
    for (let i = 0; i < chunk.length; i++) {
      if (chunk[i] !== 0x0a) continue;
      const part = chunk.subarray(start, i);
      if (pendingLen + part.length <= MAX_LINE) pending.push(part);
      else if (pendingLen < MAX_LINE) pending.push(part.subarray(0, MAX_LINE - pendingLen));
      const line = Buffer.concat(pending);
      pending = [];
      pendingLen = 0;
      start = i + 1;
      onLine(line);
    }
    if (start < chunk.length && pendingLen < MAX_LINE) {
      const rest = chunk.subarray(start, Math.min(chunk.length, start + MAX_LINE - pendingLen));
      pending.push(Buffer.from(rest));
      pendingLen += rest.length;
    }
  });
  input.on('error', (e) => onEnd(e));
  input.on('end', () => onEnd(new Error('UART closed')));

  function write(buf) {
    let off = 0;
    while (off < buf.length) {
      try {
        off += fs.writeSync(wfd, buf, off, buf.length - off);
      } catch (e) {
        if (e.code === 'EAGAIN') {
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2); // the board drains the pty
          continue;
        }
        throw e;
      }
    }
  }
  return { write };
}

module.exports = { openUART };
