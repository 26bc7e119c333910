import { describe, expect, it } from 'vitest';
import { editDistance, nearest } from '../../shared/validation/nearest';

describe('the nearest known name to a misspelt one', () => {
  it('counts insertions, deletions, substitutions and swaps of neighbours as one edit each', () => {
    expect(editDistance('claude-sonet-4-5', 'claude-sonnet-4-5')).toBe(1);
    expect(editDistance('rnu', 'run')).toBe(1);
    expect(editDistance('run', 'run')).toBe(0);
    expect(editDistance('', 'abc')).toBe(3);
    expect(editDistance('kitten', 'sitting')).toBe(3);
  });

  it('names the nearest candidate within one edit per three characters (one to three), the first on a tie', () => {
    const commands = ['run', 'serve', 'estimate', 'submit', 'jobs', 'status', 'get', 'cancel', 'results'];
    expect(nearest('rnu', commands)).toBe('run');
    expect(nearest('stauts', commands)).toBe('status');
    expect(nearest('RUN', commands)).toBe('run');
    expect(nearest('xyz', commands)).toBeUndefined();
    expect(nearest('claude-sonet-4-5', ['claude-haiku-4-5', 'claude-sonnet-4-5', 'claude-sonnet-4-6'])).toBe('claude-sonnet-4-5');
    expect(nearest('gpt-4o', ['claude-haiku-4-5', 'claude-sonnet-4-5'])).toBeUndefined();
    expect(nearest('ab', ['ax', 'ay'])).toBe('ax');
  });
});
