/**
 * The one default clock. Every step takes its clock (epoch ms) from its deps, so tests and the
 * local runtime can drive time; a step given none runs on the system's.
 */
export type Clock = () => number;

/** The clock `deps` inject, or the system's. */
export function clockOf(deps: { now?: Clock | undefined }): Clock {
  return deps.now ?? Date.now;
}
