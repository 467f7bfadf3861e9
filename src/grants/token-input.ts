import { readFileSync } from 'node:fs';
import type { TokenInput } from '../config/types.js';
import { AssertionMissingError, CredentialInputError } from '../errors.js';
import type { FileSet } from '../files/live-file.js';
import { signAssertion } from '../jwt/assertion.js';
import { liveSigningKey } from '../jwt/live-signing-key.js';
import { assertionExpiry } from './assertion-expiry.js';
import type { GrantContext, PerRequestInputs } from './grant.js';

/** Produces the value of an assertion, subject token or actor token for one token request. */
export type TokenInputReader = (ctx: GrantContext) => Promise<string>;

export function tokenInputReader(input: TokenInput, files: FileSet, credential: string): TokenInputReader {
  switch (input.source) {
    case 'file': {
      const path = input.path;
      // Read at every token request: the file is someone else's to rotate (e.g. a kubelet).
      return async () => readInputFile(path, credential);
    }
    case 'request_header': {
      const header = input.header.toLowerCase();
      return async (ctx) => {
        const value = ctx.request?.get(header);
        if (value === undefined) throw new AssertionMissingError(input.header);
        return value;
      };
    }
    case 'credential': {
      const name = input.credential;
      return async (ctx) => (await ctx.credentialToken(name)).accessToken;
    }
    case 'sign': {
      const key = liveSigningKey(input.signing, files);
      const lifetimeSeconds = Math.round(input.lifetimeMs / 1000);
      return (ctx) =>
        signAssertion(
          {
            issuer: input.issuer,
            subject: input.subject,
            audience: input.audience ?? ctx.endpoint.href,
            lifetimeSeconds,
            claims: input.claims,
          },
          key(),
        );
    }
  }
}

/** What the grant reads from each request, or undefined when none of its inputs is a request header. */
export function perRequestInputs(inputs: readonly (TokenInput | undefined)[]): PerRequestInputs | undefined {
  const fromRequest = inputs.filter(
    (i): i is TokenInput & { source: 'request_header' } => i?.source === 'request_header',
  );
  if (fromRequest.length === 0) return undefined;
  return {
    headers: fromRequest.map((i) => i.header.toLowerCase()),
    maxEntries: Math.min(...fromRequest.map((i) => i.maxEntries)),
    expiryOf: assertionExpiry,
  };
}

/** A file the token request needs, read now; a missing one is a typed, retryable failure. */
export function readInputFile(path: string, credential: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CredentialInputError(credential, `cannot read ${path}${code ? ` (${code})` : ''}`, {
      cause: err,
    });
  }
}
