'use strict';
// Agent protocol v1 framing (devicefw/PROTOCOL.md §2):
//   @hil1 <compact JSON> *<crc32 as 8 lower-case hex digits>\n
// CRC-32 is IEEE 802.3 (the zlib crc32() polynomial, reflected 0xEDB88320)
// over the JSON bytes exactly as sent.

const MAGIC = '@hil1 ';
const MAX_FRAME = 4096;

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf) {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function hex8(n) {
  return n.toString(16).padStart(8, '0');
}

// encode renders a frame object as one line (Buffer), or throws when the
// line would exceed MAX_FRAME.
function encode(obj) {
  const js = Buffer.from(JSON.stringify(obj), 'utf8');
  const line = Buffer.concat([Buffer.from(MAGIC), js, Buffer.from(' *' + hex8(crc32(js)) + '\n')]);
  if (line.length > MAX_FRAME) {
    const err = new Error(`frame of ${line.length} bytes exceeds ${MAX_FRAME}`);
    err.code = 'E_FRAME_TOO_LONG';
    throw err;
  }
  return line;
}

class FrameError extends Error {}

// split separates console text before the magic from the frame and decodes
// it. Returns {text, frame} or {text, error}; frame is null and error is
// undefined for a line without magic (console input, not for the agent).
function split(lineBuf) {
  let line = lineBuf;
  while (line.length && (line[line.length - 1] === 0x0a || line[line.length - 1] === 0x0d)) line = line.subarray(0, line.length - 1);
  const i = line.indexOf(MAGIC);
  if (i < 0) return { text: line, frame: null };
  const text = line.subarray(0, i);
  const body = line.subarray(i + MAGIC.length);
  if (body.length + MAGIC.length + 1 > MAX_FRAME) return { text, error: new FrameError('frame too long') };
  const j = body.lastIndexOf(' *');
  if (j < 0 || body.length - j - 2 !== 8) return { text, error: new FrameError('malformed frame: no CRC trailer') };
  const js = body.subarray(0, j);
  const crcText = body.subarray(j + 2).toString('latin1');
  if (!/^[0-9a-fA-F]{8}$/.test(crcText)) return { text, error: new FrameError(`malformed frame: CRC "${crcText}"`) };
  if (crc32(js) !== parseInt(crcText, 16)) return { text, error: new FrameError('frame CRC mismatch') };
  let f;
  try {
    f = JSON.parse(js.toString('utf8'));
  } catch (e) {
    return { text, error: new FrameError('malformed frame: ' + e.message) };
  }
  if (f === null || typeof f !== 'object' || Array.isArray(f)) return { text, error: new FrameError('malformed frame: not a JSON object') };
  switch (f.t) {
    case 'req':
      if (typeof f.op !== 'string' || f.op === '') return { text, error: new FrameError('malformed frame: request without op') };
      break;
    case 'res':
      break;
    case 'evt':
      if (typeof f.ev !== 'string' || f.ev === '') return { text, error: new FrameError('malformed frame: event without name') };
      break;
    default:
      return { text, error: new FrameError(`malformed frame: kind ${JSON.stringify(f.t)}`) };
  }
  return { text, frame: f };
}

// generate is the payload generator of PROTOCOL.md §5.4 (xorshift32).
function generate(size, seed) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const out = Buffer.alloc(Math.max(0, size));
  let x = seed >>> 0;
  if (x === 0) x = 0x9e3779b9;
  for (let i = 0; i < out.length; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    out[i] = alphabet.charCodeAt(x & 63);
  }
  return out;
}

module.exports = { MAGIC, MAX_FRAME, crc32, encode, split, generate, FrameError };
