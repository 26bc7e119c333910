/**
 * Where a line's bytes or JSON first go wrong, for the reason a user reads. Used only after the
 * fast path (a fatal TextDecoder, JSON.parse) has failed. V8's JSON.parse messages are not used:
 * they quote a snippet of the input (which may be prompt text) and change between Node versions.
 */

export interface Utf8Problem {
  /** 0-based offset of the first byte of the bad sequence. */
  offset: number;
  byte: number;
  /** The bytes end inside a sequence that was valid so far (a cut, not a corruption). */
  truncated: boolean;
}

/** The first invalid UTF-8 sequence (RFC 3629: no overlongs, no surrogates, ≤ U+10FFFF), or null. */
export function findInvalidUtf8(bytes: Uint8Array): Utf8Problem | null {
  let i = 0;
  while (i < bytes.length) {
    const lead = bytes[i]!;
    if (lead < 0x80) {
      i += 1;
      continue;
    }
    const continuations = lead >= 0xc2 && lead <= 0xdf ? 1 : lead >= 0xe0 && lead <= 0xef ? 2 : lead >= 0xf0 && lead <= 0xf4 ? 3 : 0;
    if (continuations === 0) return { offset: i, byte: lead, truncated: false };
    for (let k = 1; k <= continuations; k++) {
      if (i + k >= bytes.length) return { offset: i, byte: lead, truncated: true };
      const next = bytes[i + k]!;
      let low = 0x80;
      let high = 0xbf;
      if (k === 1) {
        if (lead === 0xe0) low = 0xa0;
        else if (lead === 0xed) high = 0x9f;
        else if (lead === 0xf0) low = 0x90;
        else if (lead === 0xf4) high = 0x8f;
      }
      if (next < low || next > high) return { offset: i, byte: lead, truncated: false };
    }
    i += continuations + 1;
  }
  return null;
}

export interface JsonProblem {
  /** 0-based index in the text where the problem is. */
  index: number;
  /** What is wrong, without quoting the input beyond one character. */
  problem: string;
}

type Container = 0x7b | 0x5b; // '{' | '['

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

/**
 * The first syntax error in `text` by the JSON grammar (RFC 8259), or null when it finds none.
 * Iterative, so deep nesting cannot overflow the stack.
 */
export function locateJsonError(text: string): JsonProblem | null {
  const n = text.length;
  const stack: Container[] = [];
  let i = 0;
  let state: 'value' | 'key' | 'after' = 'value';

  const skipWhitespace = () => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      i += 1;
    }
  };
  const at = (index: number, problem: string): JsonProblem => ({ index, problem });
  const insideWhat = () => (stack[stack.length - 1] === 0x7b ? 'an object' : 'an array');

  /** Scans a string starting at its opening quote; returns a problem or null. */
  const scanString = (): JsonProblem | null => {
    i += 1;
    for (;;) {
      if (i >= n) return at(i, 'the line ends inside a string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i += 1;
        return null;
      }
      if (c < 0x20) return at(i, `unescaped control character ${show(text, i)} inside a string`);
      if (c === 0x5c) {
        const escaped = text[i + 1];
        if (escaped === undefined) return at(i, 'the line ends inside a string');
        if (escaped === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) return at(i, 'bad \\u escape (needs four hex digits)');
          i += 6;
          continue;
        }
        if (!'"\\/bfnrt'.includes(escaped)) return at(i, `bad escape \\${show(text, i + 1, false)}`);
        i += 2;
        continue;
      }
      i += 1;
    }
  };

  const scanNumber = (): JsonProblem | null => {
    NUMBER.lastIndex = i;
    const match = NUMBER.exec(text);
    if (!match) return at(i, 'malformed number');
    i += match[0].length;
    const next = text.charCodeAt(i);
    // "01", "1.", "1e" and the like stop early on a character that would continue a number.
    if (next >= 0x30 && next <= 0x39) return at(i, 'malformed number (leading zero)');
    if (next === 0x2e || next === 0x65 || next === 0x45) return at(i, 'malformed number');
    return null;
  };

  for (;;) {
    skipWhitespace();
    if (state === 'value') {
      if (i >= n) return at(i, stack.length === 0 ? 'the line holds no JSON value' : `the line ends inside ${insideWhat()}`);
      const c = text.charCodeAt(i);
      if (c === 0x7b || c === 0x5b) {
        stack.push(c);
        i += 1;
        skipWhitespace();
        const close = c === 0x7b ? 0x7d : 0x5d;
        if (text.charCodeAt(i) === close) {
          stack.pop();
          i += 1;
          state = 'after';
        } else {
          state = c === 0x7b ? 'key' : 'value';
        }
        continue;
      }
      if (c === 0x22) {
        const problem = scanString();
        if (problem) return problem;
      } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
        const problem = scanNumber();
        if (problem) return problem;
      } else {
        const literal = ['true', 'false', 'null'].find((word) => text.startsWith(word, i));
        if (!literal) return at(i, `unexpected ${show(text, i)} where a value was expected`);
        i += literal.length;
      }
      state = 'after';
    } else if (state === 'key') {
      if (i >= n) return at(i, 'the line ends inside an object');
      if (text.charCodeAt(i) !== 0x22) return at(i, `expected a quoted property name, found ${show(text, i)}`);
      const problem = scanString();
      if (problem) return problem;
      skipWhitespace();
      if (i >= n) return at(i, 'the line ends inside an object');
      if (text.charCodeAt(i) !== 0x3a) return at(i, `expected ':' after a property name, found ${show(text, i)}`);
      i += 1;
      state = 'value';
    } else {
      const top = stack[stack.length - 1];
      if (top === undefined) return i < n ? at(i, `unexpected ${show(text, i)} after the end of the JSON value`) : null;
      if (i >= n) return at(i, `the line ends inside ${insideWhat()}`);
      const c = text.charCodeAt(i);
      const close = top === 0x7b ? 0x7d : 0x5d;
      if (c === 0x2c) {
        i += 1;
        state = top === 0x7b ? 'key' : 'value';
      } else if (c === close) {
        stack.pop();
        i += 1;
      } else {
        return at(i, `expected ',' or '${String.fromCharCode(close)}', found ${show(text, i)}`);
      }
    }
  }
}

/** One character for a message: 'x' when printable ASCII, else its code point (U+00E9). */
function show(text: string, index: number, quoted = true): string {
  const code = text.codePointAt(index) ?? 0;
  if (code >= 0x21 && code <= 0x7e) return quoted ? `'${String.fromCharCode(code)}'` : String.fromCharCode(code);
  if (code === 0x20) return 'a space';
  return `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
}
