/** The local runtime's own errors: what the CLI reports as a plain message or a usage error. */

export class LocalStackError extends Error {
  override readonly name = 'LocalStackError';
}

export class PortInUse extends Error {
  override readonly name = 'PortInUse';
  constructor(readonly port: number) {
    super(`port ${port} is in use`);
  }
}
