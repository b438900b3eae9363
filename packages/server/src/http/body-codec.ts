import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { HandoffError } from '../domain/errors.js';

/** The two body formats of the REST API. */
export type BodyFormat = 'json' | 'xml';

/** The Content-Type Handoff sends for each format. */
export const RESPONSE_CONTENT_TYPE: Readonly<Record<BodyFormat, string>> = {
  json: 'application/json; charset=utf-8',
  xml: 'application/xml; charset=utf-8',
};

export interface ParseXmlOptions {
  /** Deepest element nesting allowed, the root being level 1. Default 16. */
  maxDepth?: number;
  /** Most elements allowed in the document, the root included. Default 2000. */
  maxElements?: number;
  /** Element names always parsed as arrays, even when they occur once. */
  arrayFields?: readonly string[];
}

const DEFAULT_ARRAY_FIELDS: readonly string[] = ['participants', 'errors'];

/** A node of fast-xml-parser's `preserveOrder` output: `{ tag: children }`, `{ '#text': s }`, `{ '#cdata': [...] }`. */
type OrderedNode = Record<string, unknown>;

interface WalkState {
  readonly maxDepth: number;
  readonly arrayFields: ReadonlySet<string>;
}

/** A char outside XML 1.0's `Char` production (controls, lone surrogates, U+FFFE/U+FFFF). */
const INVALID_XML_CHAR = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;
const INVALID_XML_CHARS = new RegExp(INVALID_XML_CHAR.source, 'gu');
const XML_NAME_RE = /^[A-Za-z_][A-Za-z0-9._-]*$/;
const ESCAPES: Readonly<Record<string, string>> = { '&': 'amp', '<': 'lt', '>': 'gt', '"': 'quot', "'": 'apos' };
const PREDEFINED_ENTITIES: Readonly<Record<string, string>> = {
  lt: '<',
  gt: '>',
  amp: '&',
  quot: '"',
  apos: "'",
};

function invalid(message: string, details?: Record<string, unknown>): HandoffError {
  return new HandoffError('INVALID_REQUEST', message, details ? { details } : {});
}

/**
 * Parses an XML request body into a plain object: the single root element's children, whatever
 * the root is called. Leaf elements become strings (never numbers: `+1415...` and `0001` stay as
 * sent), nested elements objects, repeated siblings arrays, empty elements `''`; names in
 * `arrayFields` are always arrays (an empty one contributes no item). Attributes, comments and
 * processing instructions are ignored; CDATA is taken verbatim.
 *
 * Safety: DOCTYPE and entity declarations are refused outright; only the five predefined entities
 * and numeric character references are decoded (by this module, not the parser); depth and
 * element count are bounded. Every failure is an INVALID_REQUEST HandoffError.
 *
 * @example
 * parseXmlBody('<request><countryCode>US</countryCode><context><toNumber>+14155550100</toNumber></context></request>');
 * // { countryCode: 'US', context: { toNumber: '+14155550100' } }
 */
export function parseXmlBody(text: string, opts: ParseXmlOptions = {}): Record<string, unknown> {
  const state: WalkState = {
    maxDepth: opts.maxDepth ?? 16,
    arrayFields: new Set(opts.arrayFields ?? DEFAULT_ARRAY_FIELDS),
  };
  const maxElements = opts.maxElements ?? 2000;
  // Refused before any parsing, even inside CDATA: a DTD carries entity-expansion and XXE attacks.
  if (/<!DOCTYPE|<!ENTITY/i.test(text)) {
    throw invalid('XML DOCTYPE and entities are not allowed');
  }
  if (INVALID_XML_CHAR.test(text)) {
    throw invalid('XML body contains a character not allowed in XML 1.0');
  }
  // Counted before validating and parsing, so an element-count bomb costs one regex scan.
  if (countElements(text) > maxElements) {
    throw invalid(`XML body has more than ${maxElements} elements`);
  }
  const validation = XMLValidator.validate(text);
  if (validation !== true) {
    const { line, col, msg } = validation.err;
    throw invalid(`Malformed XML at line ${line}: ${msg}`, { line, column: col });
  }

  let top: OrderedNode[];
  try {
    top = new XMLParser({
      preserveOrder: true, // keeps text and CDATA apart, so entity decoding never touches CDATA
      ignoreAttributes: true,
      parseTagValue: false,
      parseAttributeValue: false,
      processEntities: false,
      trimValues: true,
      cdataPropName: '#cdata',
      ignoreDeclaration: true,
      ignorePiTags: true,
      // Backstop: the parser stops a depth bomb before building it; the walk below reports the limit.
      maxNestedTags: state.maxDepth,
    }).parse(text) as OrderedNode[];
  } catch (e) {
    // The parser throws on what the validator lets through, e.g. reserved names such as __proto__.
    throw invalid(`Malformed XML: ${e instanceof Error ? e.message : String(e)}`);
  }

  const root = top.length === 1 ? top[0] : undefined;
  const rootName = root && elementName(root);
  if (root === undefined || rootName === undefined || hasTextAfterSelfClosingRoot(text)) {
    throw invalid('XML body must have exactly one root element and nothing else');
  }
  const value = convertElement(rootName, root, 1, state);
  if (typeof value === 'string') {
    if (value !== '') throw invalid('XML root element must contain elements, not text');
    return {};
  }
  return value;
}

/**
 * Start tags (self-closing ones included) outside comments, CDATA and processing instructions:
 * exactly the element count of a well-formed document, as `<` cannot occur elsewhere unescaped.
 */
function countElements(text: string): number {
  let count = 0;
  // Comments, CDATA and PIs are matched whole, so a `<` inside them is skipped; only group 1 is a tag.
  for (const m of text.matchAll(/<!--[\s\S]*?-->|<!\[CDATA\[[\s\S]*?\]\]>|<\?[\s\S]*?\?>|(<)[^!?/]/g)) {
    if (m[1] !== undefined) count += 1;
  }
  return count;
}

/**
 * The validator skips its trailing-content check when the root is self-closing, and the parser
 * then drops trailing text: `<r/>junk` would pass both.
 */
function hasTextAfterSelfClosingRoot(text: string): boolean {
  const body = text.replace(/<!--[\s\S]*?-->|<\?[\s\S]*?\?>/g, '').trim();
  const root = /^<[^<>]*\/>/.exec(body);
  return root !== null && body.length > root[0].length;
}

/** The tag name of an element node, or undefined for text/CDATA nodes. */
function elementName(node: OrderedNode): string | undefined {
  const key = Object.keys(node)[0];
  return key === undefined || key === '#text' || key === '#cdata' ? undefined : key;
}

function convertElement(
  name: string,
  node: OrderedNode,
  depth: number,
  state: WalkState,
): string | Record<string, unknown> {
  if (depth > state.maxDepth) {
    throw invalid(`XML nesting is deeper than ${state.maxDepth} levels`);
  }
  const texts: string[] = [];
  let fields: Record<string, unknown> | undefined;
  for (const child of (node[name] ?? []) as OrderedNode[]) {
    const childName = elementName(child);
    if (childName !== undefined) {
      fields ??= {};
      addField(fields, childName, convertElement(childName, child, depth + 1, state), state.arrayFields);
    } else if ('#cdata' in child) {
      texts.push(((child['#cdata'] ?? []) as OrderedNode[]).map((t) => String(t['#text'] ?? '')).join(''));
    } else {
      texts.push(decodeXmlText(String(child['#text'] ?? '')));
    }
  }
  if (fields === undefined) return texts.join('');
  if (texts.some((t) => t !== '')) {
    throw invalid(`XML element <${name}> mixes text and elements`);
  }
  return fields;
}

function addField(
  fields: Record<string, unknown>,
  name: string,
  value: string | Record<string, unknown>,
  arrayFields: ReadonlySet<string>,
): void {
  const existing = fields[name];
  if (arrayFields.has(name)) {
    const list = Array.isArray(existing) ? existing : (fields[name] = []);
    if (value !== '') list.push(value);
  } else if (existing === undefined) {
    fields[name] = value;
  } else if (Array.isArray(existing)) {
    existing.push(value);
  } else {
    fields[name] = [existing, value];
  }
}

/** Decodes the predefined entities and numeric character references; anything else is refused. */
function decodeXmlText(raw: string): string {
  return raw.replace(/&([^;&<\s]*);|&/g, (match: string, ref: string | undefined) => {
    const decoded = ref === undefined ? undefined : (PREDEFINED_ENTITIES[ref] ?? decodeCharRef(ref));
    if (decoded === undefined) {
      throw invalid(`XML reference ${match} is not allowed: only &lt; &gt; &amp; &quot; &apos; and &#...; are`);
    }
    return decoded;
  });
}

/** `#65` or `#x41` to its char, or undefined when malformed or not an XML char. */
function decodeCharRef(ref: string): string | undefined {
  const m = /^#(?:x([0-9A-Fa-f]{1,6})|([0-9]{1,7}))$/.exec(ref);
  if (m === null) return undefined;
  const cp = m[1] !== undefined ? parseInt(m[1], 16) : Number(m[2]);
  return isXmlChar(cp) ? String.fromCodePoint(cp) : undefined;
}

function isXmlChar(cp: number): boolean {
  return (
    cp === 0x9 ||
    cp === 0xa ||
    cp === 0xd ||
    (cp >= 0x20 && cp <= 0xd7ff) ||
    (cp >= 0xe000 && cp <= 0xfffd) ||
    (cp >= 0x10000 && cp <= 0x10ffff)
  );
}

/**
 * Serializes an object as an XML document under `root`: keys become elements, arrays repeated
 * elements named after the key (an empty array: none), null/undefined are omitted, numbers,
 * booleans and bigints become text, Dates ISO-8601 text. Strings are escaped, chars invalid in
 * XML 1.0 are dropped, and leading/trailing whitespace and CR are written as character references,
 * so `parseXmlBody(toXml(r, obj))` gives `obj` back for string leaves (arrays of two or more, or
 * listed in `arrayFields`). Keys that are not simple XML names throw a TypeError.
 *
 * @example
 * toXml('response', { status: 'success', handle: { routableNumber: '+14155550100' } });
 * // '<?xml version="1.0" encoding="UTF-8"?><response><status>success</status><handle>...</handle></response>'
 */
export function toXml(root: string, value: Record<string, unknown>): string {
  return `<?xml version="1.0" encoding="UTF-8"?>${element(root, value)}`;
}

function element(name: string, value: unknown): string {
  if (!XML_NAME_RE.test(name)) throw new TypeError(`Cannot serialize "${name}" as an XML element name`);
  if (value === null || value === undefined) return '';
  if (Array.isArray(value)) {
    return value
      .map((item: unknown) => {
        if (Array.isArray(item)) throw new TypeError(`Cannot serialize nested arrays under "${name}" as XML`);
        return element(name, item);
      })
      .join('');
  }
  return `<${name}>${content(value)}</${name}>`;
}

function content(value: unknown): string {
  if (typeof value === 'string') return escapeXmlText(value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'object' && value !== null) {
    return Object.entries(value)
      .map(([key, child]) => element(key, child))
      .join('');
  }
  throw new TypeError(`Cannot serialize a ${typeof value} as XML`);
}

const charRef = (c: string): string => `&#${c.codePointAt(0)};`;

function escapeXmlText(s: string): string {
  const escaped = s
    .replace(INVALID_XML_CHARS, '')
    .replace(/[&<>"'\r]/g, (c) => (c === '\r' ? '&#13;' : `&${ESCAPES[c]};`));
  // Parsers trim or normalise edge whitespace; references survive both.
  return escaped.replace(/^\s+|\s+$/g, (ws) => Array.from(ws, charRef).join(''));
}

/**
 * The body format of a Content-Type: JSON for `application/json` and `application/*+json`, XML for
 * `application/xml`, `text/xml` and `application/*+xml` (case and parameters ignored), else null.
 *
 * @example
 * requestFormat('Application/XML; charset=UTF-8'); // 'xml'
 * requestFormat('text/plain'); // null
 */
export function requestFormat(contentType: string | undefined): BodyFormat | null {
  if (contentType === undefined) return null;
  const type = contentType.split(';', 1)[0]?.trim().toLowerCase() ?? '';
  if (type === 'application/json' || /^application\/[^/\s]+\+json$/.test(type)) return 'json';
  if (type === 'application/xml' || type === 'text/xml' || /^application\/[^/\s]+\+xml$/.test(type)) return 'xml';
  return null;
}

/**
 * The response format: the one `Accept` prefers (q-values respected; a wildcard range counts for a
 * format only when no more specific range matches it), the request's format when `Accept` is
 * absent or rates both formats equally (as a bare wildcard does), else JSON. Throws NOT_ACCEPTABLE
 * when `Accept` allows neither format (e.g. `text/html` alone).
 *
 * @example
 * negotiateResponseFormat('application/xml', undefined); // 'xml'
 * negotiateResponseFormat('application/xml', 'application/json'); // 'json'
 * negotiateResponseFormat('application/xml', 'text/html, application/*;q=0.8'); // 'xml' (a tie)
 */
export function negotiateResponseFormat(contentType: string | undefined, accept: string | undefined): BodyFormat {
  const fallback = requestFormat(contentType) ?? 'json';
  const ranges = parseAccept(accept ?? '');
  if (ranges.length === 0) return fallback;

  const q = { json: qualityOf('json', ranges), xml: qualityOf('xml', ranges) };
  if (q.json <= 0 && q.xml <= 0) {
    throw new HandoffError('NOT_ACCEPTABLE', 'Accept must allow application/json or application/xml');
  }
  if (q.json === q.xml) return fallback;
  return q.json > q.xml ? 'json' : 'xml';
}

/** The concrete types a response of each format can be sent as. */
const ACCEPTABLE_TYPES: Readonly<Record<BodyFormat, readonly string[]>> = {
  json: ['application/json'],
  xml: ['application/xml', 'text/xml'],
};

interface MediaRange {
  type: string;
  subtype: string;
  q: number;
}

/** Parses an Accept header, skipping malformed ranges and ranges with an invalid q. */
function parseAccept(accept: string): MediaRange[] {
  const ranges: MediaRange[] = [];
  for (const part of accept.split(',')) {
    const [range = '', ...params] = part.split(';');
    const m = /^([^\s/]+)\/([^\s/]+)$/.exec(range.trim().toLowerCase());
    if (m?.[1] === undefined || m[2] === undefined) continue;
    let q = 1;
    for (const param of params) {
      const [key, val] = param.split('=', 2).map((s) => s.trim());
      if (key?.toLowerCase() === 'q') q = val !== undefined && /^\d+(\.\d+)?$/.test(val) ? Number(val) : NaN;
    }
    if (!(q >= 0 && q <= 1)) continue;
    ranges.push({ type: m[1], subtype: m[2], q });
  }
  return ranges;
}

/** The q of the most specific range matching `format` (RFC 9110 12.5.1), 0 when none does. */
function qualityOf(format: BodyFormat, ranges: readonly MediaRange[]): number {
  let best = { specificity: 0, q: 0 };
  for (const range of ranges) {
    const specificity = specificityFor(range, format);
    if (specificity > best.specificity || (specificity > 0 && specificity === best.specificity && range.q > best.q)) {
      best = { specificity, q: range.q };
    }
  }
  return best.q;
}

/** 3 when the range names a type of `format`, 2 for a covering `type/*`, 1 for the full wildcard, 0 when no match. */
function specificityFor({ type, subtype }: MediaRange, format: BodyFormat): number {
  if (type === '*') return subtype === '*' ? 1 : 0;
  // `application/*` covers both formats; `text/*` covers text/xml.
  if (subtype === '*') return type === 'application' || (type === 'text' && format === 'xml') ? 2 : 0;
  return ACCEPTABLE_TYPES[format].includes(`${type}/${subtype}`) ? 3 : 0;
}
