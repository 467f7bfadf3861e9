import { type DestinationStream, type Logger, pino } from 'pino';
import type { LogLevel } from './config/types.js';

export type { Logger } from 'pino';

/**
 * Paths that could ever hold a secret, censored on every line. The code never logs tokens or
 * secrets in the first place; this is the second line of defence, and tests prove the first.
 */
const REDACT = [
  'authorization',
  'cookie',
  'headers.authorization',
  'headers.cookie',
  'headers["proxy-authorization"]',
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  '*.client_secret',
  '*.access_token',
  '*.refresh_token',
  '*.password',
  'client_secret',
  'access_token',
  'refresh_token',
  'password',
];

export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'token-injector' },
      redact: { paths: REDACT, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
