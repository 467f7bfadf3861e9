import type { CredentialConfig } from '../config/types.js';

/**
 * Adds the client's authentication to a token request. Chosen once per credential at start-up;
 * may be async because later methods sign assertions.
 */
export type ClientAuth = (form: URLSearchParams, headers: Record<string, string>) => void | Promise<void>;

/**
 * RFC 6749 §2.3.1: the client id and secret are form-urlencoded *before* being joined and
 * base64-encoded, which matters for ids and secrets holding ":", "%", "+" or non-ASCII.
 */
export function clientSecretBasic(clientId: string, clientSecret: string): ClientAuth {
  const value = `Basic ${Buffer.from(`${formEncode(clientId)}:${formEncode(clientSecret)}`).toString('base64')}`;
  return (_form, headers) => {
    headers['authorization'] = value;
  };
}

/** RFC 6749 §2.3.1: id and secret as form fields (the spec discourages it, but many servers need it). */
export function clientSecretPost(clientId: string, clientSecret: string): ClientAuth {
  return (form) => {
    form.set('client_id', clientId);
    form.set('client_secret', clientSecret);
  };
}

export function clientAuthFor(cred: CredentialConfig): ClientAuth {
  switch (cred.authMethod) {
    case 'client_secret_basic':
      return clientSecretBasic(cred.clientId, cred.clientSecret);
    case 'client_secret_post':
      return clientSecretPost(cred.clientId, cred.clientSecret);
  }
}

/** application/x-www-form-urlencoded encoding of one value, as the WHATWG URL standard defines it. */
export function formEncode(value: string): string {
  return new URLSearchParams([['', value]]).toString().slice(1);
}
