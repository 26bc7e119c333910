/**
 * A tool call's `input`, generated from the tool's `input_schema` (JSON Schema): every required
 * property, of its declared type, within its enum, const, bounds and lengths, so a client that
 * validates the input against the schema accepts it. Deterministic: the values come from a stream
 * seeded by the prompt's hash, and never echo the prompt.
 */
import type { Random } from './prng';

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

const WORDS = ['alpha', 'bravo', 'delta', 'echo', 'kilo', 'lima', 'oscar', 'sierra', 'tango', 'zulu'];
/** Nesting beyond this gets the simplest value of its type (recursive schemas end here). */
const MAX_DEPTH = 6;

function pick<T>(items: readonly T[], random: Random): T {
  return items[Math.floor(random() * items.length)]!;
}

function firstType(schema: Record<string, unknown>): string | undefined {
  const type = schema.type;
  if (typeof type === 'string') return type;
  if (Array.isArray(type)) return type.find((t) => t !== 'null') ?? type[0];
  if (isRecord(schema.properties)) return 'object';
  if (schema.items !== undefined) return 'array';
  return undefined;
}

function stringValue(schema: Record<string, unknown>, random: Random): string {
  switch (schema.format) {
    case 'date':
      return '2026-01-15';
    case 'date-time':
      return '2026-01-15T09:30:00Z';
    case 'email':
      return 'someone@example.com';
    case 'uri':
    case 'url':
      return 'https://example.com/item';
    case 'uuid':
      return '00000000-0000-4000-8000-000000000000';
  }
  const min = typeof schema.minLength === 'number' ? schema.minLength : 0;
  const max = typeof schema.maxLength === 'number' ? schema.maxLength : Number.POSITIVE_INFINITY;
  let text = pick(WORDS, random);
  while (text.length < min) text += ` ${pick(WORDS, random)}`;
  return text.slice(0, Math.max(min, Math.min(max, text.length)));
}

function numberValue(schema: Record<string, unknown>, random: Random, integer: boolean): number {
  const low =
    typeof schema.minimum === 'number' ? schema.minimum : typeof schema.exclusiveMinimum === 'number' ? schema.exclusiveMinimum + (integer ? 1 : 0.5) : 0;
  const high =
    typeof schema.maximum === 'number'
      ? schema.maximum
      : typeof schema.exclusiveMaximum === 'number'
        ? schema.exclusiveMaximum - (integer ? 1 : 0.5)
        : low + 100;
  const value = low + random() * Math.max(0, high - low);
  return integer ? Math.min(Math.floor(high), Math.max(Math.ceil(low), Math.round(value))) : Math.round(value * 100) / 100;
}

/** A value that satisfies `schema` (the common keywords; `$ref`, `not` and `pattern` are not followed). */
export function valueFor(schema: unknown, random: Random, depth = 0): unknown {
  if (!isRecord(schema)) return {};
  if ('const' in schema) return schema.const;
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return pick(schema.enum, random);
  for (const key of ['anyOf', 'oneOf'] as const) {
    const options = schema[key];
    if (Array.isArray(options) && options.length > 0) return valueFor(options[0], random, depth + 1);
  }
  if (Array.isArray(schema.allOf) && schema.allOf.length > 0) {
    return valueFor(Object.assign({}, ...schema.allOf.filter(isRecord)), random, depth + 1);
  }
  switch (firstType(schema)) {
    case 'string':
      return stringValue(schema, random);
    case 'integer':
      return numberValue(schema, random, true);
    case 'number':
      return numberValue(schema, random, false);
    case 'boolean':
      return random() < 0.5;
    case 'null':
      return null;
    case 'array': {
      if (depth >= MAX_DEPTH) return [];
      const min = typeof schema.minItems === 'number' ? schema.minItems : 1;
      const max = typeof schema.maxItems === 'number' ? schema.maxItems : Math.max(min, 2);
      const count = Math.min(max, Math.max(min, 1 + Math.floor(random() * 2)));
      return Array.from({ length: count }, () => valueFor(schema.items, random, depth + 1));
    }
    default:
      return objectValue(schema, random, depth);
  }
}

function objectValue(schema: Record<string, unknown>, random: Random, depth: number): Record<string, unknown> {
  const properties = isRecord(schema.properties) ? schema.properties : {};
  const required = Array.isArray(schema.required) ? schema.required.filter((name): name is string => typeof name === 'string') : [];
  // Required properties always; optional ones while shallow, as a model fills what it can.
  const names = depth >= MAX_DEPTH ? required : [...new Set([...required, ...Object.keys(properties)])];
  const out: Record<string, unknown> = {};
  for (const name of names) out[name] = depth >= MAX_DEPTH ? null : valueFor(properties[name], random, depth + 1);
  return out;
}
