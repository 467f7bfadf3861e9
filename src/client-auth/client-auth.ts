import type { CredentialConfig } from '../config/types.js';
import type { FileSet } from '../files/live-file.js';
import { readInputFile } from '../grants/token-input.js';
import { signAssertion } from '../jwt/assertion.js';
import { liveSigningKey } from '../jwt/live-signing-key.js';

/** What client authentication may need to know about the request it authenticates. */
export interface ClientAuthContext {
  /** The URL the token request goes to (the default audience of client assertions). */
  readonly endpoint: URL;
}

/**
 * Adds the client's authentication to a token request. Chosen once per credential at start-up;
 * async because assertion methods sign a fresh JWT for every request.
 */
export type ClientAuth = (
  form: URLSearchParams,
  headers: Record<string, string>,
  ctx: ClientAuthContext,
) => void | Promise<void>;

/** RFC 7523 §2.2: the type of every assertion token-injector signs, and the default of a ready one. */
export const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** Client assertions are used once, right away: a short life limits replay. */
const CLIENT_ASSERTION_LIFETIME_SECONDS = 60;

/**
 * RFC 6749 §2.3.1: the client id and secret are form-urlencoded *before* being joined and
 * base64-encoded, which matters for ids and secrets holding ":", "%", "+" or non-ASCII.
 */
export function clientSecretBasic(clientId: string, secret: () => string): ClientAuth {
  return (_form, headers) => {
    headers['authorization'] =
      `Basic ${Buffer.from(`${formEncode(clientId)}:${formEncode(secret())}`).toString('base64')}`;
  };
}

/** RFC 6749 §2.3.1: id and secret as form fields (the spec discourages it, but many servers need it). */
export function clientSecretPost(clientId: string, secret: () => string): ClientAuth {
  return (form) => {
    form.set('client_id', clientId);
    form.set('client_secret', secret());
  };
}

/** Public clients (`none`) and mutual TLS (RFC 8705 §2): the id goes in the form, proof elsewhere. */
export function clientIdOnly(clientId: string): ClientAuth {
  return (form) => {
    form.set('client_id', clientId);
  };
}

/**
 * RFC 7521 §4.2 client assertion, by default RFC 7523 §2.2's jwt-bearer. `assertion` builds (or
 * reads) a JWT per token request; `client_id` is sent too, as several providers require it
 * although the RFC makes it optional. `type` is another profile's URI for a ready assertion, e.g.
 * `urn:ietf:params:oauth:client-assertion-type:jwt-spiffe` for a SPIFFE JWT-SVID
 * (draft-ietf-oauth-spiffe-client-auth §3.1), passed through as it is.
 */
export function clientAssertion(
  clientId: string,
  assertion: (ctx: ClientAuthContext) => Promise<string> | string,
  type: string = JWT_BEARER_ASSERTION,
): ClientAuth {
  return async (form, _headers, ctx) => {
    form.set('client_id', clientId);
    form.set('client_assertion_type', type);
    form.set('client_assertion', (await assertion(ctx)).trim());
  };
}

export function clientAuthFor(cred: CredentialConfig, files: FileSet): ClientAuth {
  const auth = cred.clientAuth;
  const claims = (ctx: ClientAuthContext) => ({
    issuer: cred.clientId,
    subject: cred.clientId,
    audience: ('assertionAudience' in auth ? auth.assertionAudience : undefined) ?? ctx.endpoint.href,
    lifetimeSeconds: CLIENT_ASSERTION_LIFETIME_SECONDS,
  });
  switch (auth.method) {
    case 'client_secret_basic':
      return clientSecretBasic(cred.clientId, files.value(auth.secret).read);
    case 'client_secret_post':
      return clientSecretPost(cred.clientId, files.value(auth.secret).read);
    case 'client_secret_jwt': {
      const secret = files.value(auth.secret);
      return clientAssertion(cred.clientId, (ctx) =>
        signAssertion(claims(ctx), { key: new TextEncoder().encode(secret.read()), alg: 'HS256' }),
      );
    }
    case 'private_key_jwt': {
      if (auth.assertionFile !== undefined) {
        const path = auth.assertionFile;
        // A projected service-account token is rewritten by the kubelet before it expires:
        // read it at every request rather than trusting a cached copy.
        return clientAssertion(cred.clientId, () => readInputFile(path, cred.name), auth.assertionType);
      }
      const key = liveSigningKey(auth.signing!, files);
      return clientAssertion(cred.clientId, (ctx) => signAssertion(claims(ctx), key()));
    }
    case 'tls_client_auth':
    case 'self_signed_tls_client_auth':
    case 'none':
      return clientIdOnly(cred.clientId);
  }
}

/** application/x-www-form-urlencoded encoding of one value, as the WHATWG URL standard defines it. */
export function formEncode(value: string): string {
  return new URLSearchParams([['', value]]).toString().slice(1);
}
