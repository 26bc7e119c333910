/**
 * aws-local-stepfunctions calls Promise.withResolvers (Node 22). On Node 20 every Task would throw
 * and a States.ALL Catch would turn that into a quiet wrong branch. Import this before the engine.
 */
const P = Promise as unknown as { withResolvers?: unknown };
if (typeof P.withResolvers !== 'function') {
  P.withResolvers = function withResolvers<T>() {
    let resolve!: (value: T | PromiseLike<T>) => void;
    let reject!: (reason?: unknown) => void;
    const promise = new Promise<T>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}
export {};
