/**
 * Reads a create body (`{"requests": [...]}`) as it streams in, handing each element of `requests`
 * to a callback as soon as its last byte arrives. Only one element is held at a time, so a 256 MB
 * body never sits in memory whole.
 *
 * The scanner checks the top-level structure byte by byte and cuts out each element by tracking
 * strings and bracket depth; `JSON.parse` then validates the element itself. Cuts happen only at
 * ASCII bytes, which never occur inside a multi-byte UTF-8 character, so decoding is always whole.
 */

/** The body is not valid JSON, or not the shape create accepts: answered as 400 invalid_request_error. */
export class InvalidBody extends Error {
  override readonly name = 'InvalidBody';
}

const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;

function isWhitespace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

function isDelimiter(b: number): boolean {
  return isWhitespace(b) || b === COMMA || b === CLOSE_BRACKET || b === CLOSE_BRACE;
}

type State =
  | 'before-object'
  | 'object-open' // after `{`: a key or `}`
  | 'key-expected' // after `,`: a key
  | 'key' // inside a key string
  | 'colon'
  | 'value'
  | 'after-value' // after a member: `,` or `}`
  | 'array-open' // after `[`: an element or `]`
  | 'element-expected' // after `,`: an element
  | 'element' // inside an element
  | 'after-element' // `,` or `]`
  | 'done';

type Capture = 'container' | 'string' | 'scalar';

export class CreateBodyParser {
  private state: State = 'before-object';
  private consumed = 0;
  private parts: Buffer[] = [];
  private capture: Capture = 'container';
  private depth = 0;
  private inString = false;
  private escaped = false;
  private key = '';
  private sawRequests = false;
  private elements = 0;

  /** `onRequest` gets each parsed element with its index; whatever it throws stops the parse. */
  constructor(private readonly onRequest: (item: unknown, index: number) => void) {}

  write(chunk: Buffer): void {
    // Index in this chunk where the value being cut out started (0 when it began in an earlier chunk).
    let from = this.state === 'key' || this.state === 'element' ? 0 : -1;
    // Next `"` and `\` at or after a position (-1: none left in this chunk), found natively so the
    // text inside strings — nearly all of a body — is skipped without a byte-by-byte loop.
    let nextQuote = -2;
    let nextBackslash = -2;
    const stringStop = (at: number): number => {
      if (nextQuote !== -1 && nextQuote < at) nextQuote = chunk.indexOf(QUOTE, at);
      if (nextBackslash !== -1 && nextBackslash < at) nextBackslash = chunk.indexOf(BACKSLASH, at);
      if (nextQuote === -1) return nextBackslash === -1 ? chunk.length : nextBackslash;
      return nextBackslash === -1 ? nextQuote : Math.min(nextQuote, nextBackslash);
    };
    let i = 0;
    while (i < chunk.length) {
      if ((this.state === 'element' || this.state === 'key') && this.inString && !this.escaped) {
        i = stringStop(i);
        if (i === chunk.length) break;
      }
      const b = chunk[i]!;
      switch (this.state) {
        case 'before-object':
          if (isWhitespace(b)) break;
          if (b !== OPEN_BRACE) throw this.fail(i, 'the body must be a JSON object');
          this.state = 'object-open';
          break;
        case 'object-open':
        case 'key-expected':
          if (isWhitespace(b)) break;
          if (b === CLOSE_BRACE && this.state === 'object-open') {
            this.finishObject();
            break;
          }
          if (b !== QUOTE) throw this.fail(i, 'expected a property name');
          this.startCapture('string');
          this.feedCapture(b);
          this.state = 'key';
          from = i;
          break;
        case 'key':
          if (this.feedCapture(b)) {
            this.key = this.parseCaptured(chunk.subarray(from, i + 1), i) as string;
            from = -1;
            this.state = 'colon';
          }
          break;
        case 'colon':
          if (isWhitespace(b)) break;
          if (b !== COLON) throw this.fail(i, "expected ':' after a property name");
          this.state = 'value';
          break;
        case 'value':
          if (isWhitespace(b)) break;
          if (this.key !== 'requests') throw new InvalidBody(`${this.key}: Extra inputs are not permitted`);
          if (this.sawRequests) throw new InvalidBody('requests: given more than once');
          if (b !== OPEN_BRACKET) throw new InvalidBody('requests: Input should be a valid list');
          this.sawRequests = true;
          this.state = 'array-open';
          break;
        case 'after-value':
          if (isWhitespace(b)) break;
          if (b === COMMA) this.state = 'key-expected';
          else if (b === CLOSE_BRACE) this.finishObject();
          else throw this.fail(i, "expected ',' or '}'");
          break;
        case 'array-open':
        case 'element-expected':
          if (isWhitespace(b)) break;
          if (b === CLOSE_BRACKET && this.state === 'array-open') {
            this.state = 'after-value';
            break;
          }
          this.startCapture(b === OPEN_BRACE || b === OPEN_BRACKET ? 'container' : b === QUOTE ? 'string' : 'scalar');
          this.state = 'element';
          from = i;
          if (this.capture === 'scalar') break; // its first byte is part of it; the delimiter ends it
          this.feedCapture(b);
          break;
        case 'element':
          if (this.capture === 'scalar') {
            if (!isDelimiter(b)) break;
            this.emitElement(chunk.subarray(from, i), i);
            from = -1;
            this.state = 'after-element';
            continue; // the delimiter belongs to the next state
          }
          if (this.feedCapture(b)) {
            this.emitElement(chunk.subarray(from, i + 1), i);
            from = -1;
            this.state = 'after-element';
          }
          break;
        case 'after-element':
          if (isWhitespace(b)) break;
          if (b === COMMA) this.state = 'element-expected';
          else if (b === CLOSE_BRACKET) this.state = 'after-value';
          else throw this.fail(i, "expected ',' or ']' in requests");
          break;
        case 'done':
          if (!isWhitespace(b)) throw this.fail(i, 'unexpected data after the end of the object');
          break;
      }
      i += 1;
    }
    if (from >= 0) this.parts.push(Buffer.from(chunk.subarray(from)));
    this.consumed += chunk.length;
  }

  /** Call once the body has ended; throws if it stopped part-way or never named `requests`. */
  end(): void {
    if (this.state !== 'done') {
      throw new InvalidBody('The request body is not valid JSON: unexpected end of input');
    }
    if (!this.sawRequests) throw new InvalidBody('requests: Field required');
  }

  private finishObject(): void {
    this.state = 'done';
  }

  private startCapture(kind: Capture): void {
    this.capture = kind;
    this.depth = 0;
    this.inString = false;
    this.escaped = false;
    this.parts = [];
  }

  /** Feeds one byte of a container or string capture; true when that byte closes it. */
  private feedCapture(b: number): boolean {
    if (this.inString) {
      if (this.escaped) this.escaped = false;
      else if (b === BACKSLASH) this.escaped = true;
      else if (b === QUOTE) {
        this.inString = false;
        return this.capture === 'string';
      }
      return false;
    }
    if (b === QUOTE) this.inString = true;
    else if (b === OPEN_BRACE || b === OPEN_BRACKET) this.depth += 1;
    else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) {
      this.depth -= 1;
      return this.depth === 0;
    }
    return false;
  }

  private parseCaptured(tail: Buffer, at: number): unknown {
    const bytes = this.parts.length > 0 ? Buffer.concat([...this.parts, tail]) : tail;
    this.parts = [];
    try {
      return JSON.parse(bytes.toString('utf8'));
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      throw this.fail(at, detail);
    }
  }

  private emitElement(tail: Buffer, at: number): void {
    const item = this.parseCaptured(tail, at);
    const index = this.elements;
    this.elements += 1;
    this.onRequest(item, index);
  }

  private fail(at: number, detail: string): InvalidBody {
    return new InvalidBody(`The request body is not valid JSON: ${detail} (at byte ${this.consumed + at})`);
  }
}
