/**
 * Writes SIP messages as canonical wire octets: CRLF line ends, canonical header names, and a
 * Content-Length that always matches the body (RFC 3261 §7, §20.14).
 */
import type { SipMessage } from './message.js';

/**
 * Serializes a message. The header section is encoded as the message's `headerEncoding`
 * (UTF-8 unless it was received otherwise), the body copied as is. An existing Content-Length
 * is rewritten in place; otherwise one is appended.
 *
 * @example
 * socket.send(serialize(createResponse(req, 200)), port, host);
 */
export function serialize(msg: SipMessage): Buffer {
  let head = msg.kind === 'request' ? `${msg.method} ${msg.uri} SIP/2.0\r\n` : `SIP/2.0 ${msg.status} ${msg.reason}\r\n`;
  const h = msg.headers;
  const cl = String(msg.body.length);
  let wroteLength = false;
  for (let i = 0; i < h.size; i++) {
    if (h.keyAt(i) === 'content-length') {
      if (wroteLength) continue;
      wroteLength = true;
      head += 'Content-Length: ' + cl + '\r\n';
    } else {
      head += h.nameAt(i) + ': ' + h.valueAt(i) + '\r\n';
    }
  }
  if (!wroteLength) head += 'Content-Length: ' + cl + '\r\n';
  head += '\r\n';
  if (msg.body.length === 0) return Buffer.from(head, msg.headerEncoding);
  const headLength = Buffer.byteLength(head, msg.headerEncoding);
  const out = Buffer.allocUnsafe(headLength + msg.body.length);
  out.write(head, 0, msg.headerEncoding);
  msg.body.copy(out, headLength);
  return out;
}
