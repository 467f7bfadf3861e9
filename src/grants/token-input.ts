import { readFileSync } from 'node:fs';
import type { TokenInput } from '../config/types.js';
import { AssertionMissingError, CredentialInputError } from '../errors.js';
import type { FileSet } from '../files/live-file.js';
import { signAssertion } from '../jwt/assertion.js';
import { liveSigningKey } from '../jwt/live-signing-key.js';
import type { GrantContext } from './grant.js';

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

/** The header names of a grant's `request_header` inputs, lower-case. */
export function requestHeaders(inputs: readonly (TokenInput | undefined)[]): string[] {
  return inputs
    .filter((i): i is TokenInput & { source: 'request_header' } => i?.source === 'request_header')
    .map((i) => i.header.toLowerCase());
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
