/** Exit codes of the `token-injector` command; documented in the README and in `--help`. */
export const EXIT = {
  ok: 0,
  /** The configuration is invalid (every problem is printed with its key path). */
  configInvalid: 1,
  /** Bad command-line usage. */
  usage: 2,
  /** `token`: no token could be obtained. */
  tokenFailed: 3,
  /** `run`: the proxy could not start (e.g. the port is taken). */
  startFailed: 4,
  /** `ca init`: the CA was not written (a file is already there, or DIR cannot be written). */
  caInitFailed: 5,
} as const;
