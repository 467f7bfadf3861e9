import { describe, expect, it } from 'vitest';
import {
  clientAuthFor,
  clientSecretBasic,
  clientSecretPost,
  formEncode,
} from '../../../src/client-auth/client-auth.js';
import type { CredentialConfig } from '../../../src/config/types.js';

function apply(auth: ReturnType<typeof clientSecretBasic>) {
  const form = new URLSearchParams({ grant_type: 'client_credentials' });
  const headers: Record<string, string> = {};
  auth(form, headers);
  return { form, headers };
}

function decodeBasic(header: string | undefined): string {
  expect(header).toMatch(/^Basic [A-Za-z0-9+/]+=*$/);
  return Buffer.from(header!.slice('Basic '.length), 'base64').toString('utf8');
}

function credential(authMethod: CredentialConfig['authMethod']): CredentialConfig {
  return {
    name: 'orders',
    tokenEndpoint: new URL('https://idp.example.com/token'),
    grantType: 'client_credentials',
    clientId: 'id',
    clientSecret: 'secret',
    authMethod,
    params: {},
    prefetch: false,
    timeoutMs: 10_000,
    refreshAhead: 0.8,
    tls: {},
  };
}

describe('formEncode', () => {
  it.each([
    ['plain-id_1.x*', 'plain-id_1.x*'],
    ['a b', 'a+b'],
    [':', '%3A'],
    ['%', '%25'],
    ['+', '%2B'],
    ['/', '%2F'],
    ['=', '%3D'],
    ['@', '%40'],
    ['&', '%26'],
    ['~', '%7E'],
    ['\u00e9', '%C3%A9'],
  ])('encodes %j as %j', (value, encoded) => {
    expect(formEncode(value)).toBe(encoded);
  });
});

describe('client_secret_basic (RFC 6749 §2.3.1)', () => {
  it('form-urlencodes the id and the secret before joining and base64-encoding them', () => {
    const { form, headers } = apply(clientSecretBasic('a b:c', 'p@ss:w%rd+/='));
    expect(decodeBasic(headers['authorization'])).toBe('a+b%3Ac:p%40ss%3Aw%25rd%2B%2F%3D');
    expect(headers['authorization']).toBe(
      `Basic ${Buffer.from('a+b%3Ac:p%40ss%3Aw%25rd%2B%2F%3D').toString('base64')}`,
    );
    // The credentials travel in the header only.
    expect(form.has('client_id')).toBe(false);
    expect(form.has('client_secret')).toBe(false);
    expect(form.toString()).toBe('grant_type=client_credentials');
  });

  it('leaves plain ids and secrets unchanged', () => {
    const { headers } = apply(clientSecretBasic('orders-client', 'S3cr3t'));
    expect(headers['authorization']).toBe(`Basic ${Buffer.from('orders-client:S3cr3t').toString('base64')}`);
  });

  it('encodes non-ASCII as UTF-8 percent-escapes', () => {
    const { headers } = apply(clientSecretBasic('cl\u00efent', 'm\u00f6tley'));
    expect(decodeBasic(headers['authorization'])).toBe('cl%C3%AFent:m%C3%B6tley');
  });

  it('keeps the colon of the id out of the separator position', () => {
    const { headers } = apply(clientSecretBasic('id:with:colons', 'secret'));
    const decoded = decodeBasic(headers['authorization']);
    expect(decoded.split(':')).toEqual(['id%3Awith%3Acolons', 'secret']);
  });

  it('replaces an authorization header already present', () => {
    const headers: Record<string, string> = { authorization: 'Bearer old' };
    clientSecretBasic('i', 's')(new URLSearchParams(), headers);
    expect(headers['authorization']).toBe(`Basic ${Buffer.from('i:s').toString('base64')}`);
  });
});

describe('client_secret_post', () => {
  it('sets client_id and client_secret as form fields, raw (the form encodes them once)', () => {
    const { form, headers } = apply(clientSecretPost('a b:c', 'p@ss:w%rd+/='));
    expect(form.get('client_id')).toBe('a b:c');
    expect(form.get('client_secret')).toBe('p@ss:w%rd+/=');
    expect(form.get('grant_type')).toBe('client_credentials');
    expect(form.toString()).toBe(
      'grant_type=client_credentials&client_id=a+b%3Ac&client_secret=p%40ss%3Aw%25rd%2B%2F%3D',
    );
    expect(headers).toEqual({});
  });

  it('replaces fields of the same name instead of duplicating them', () => {
    const form = new URLSearchParams([
      ['client_id', 'x'],
      ['client_id', 'y'],
    ]);
    clientSecretPost('id', 'secret')(form, {});
    expect(form.getAll('client_id')).toEqual(['id']);
    expect(form.getAll('client_secret')).toEqual(['secret']);
  });
});

describe('clientAuthFor', () => {
  it('picks client_secret_basic', async () => {
    const form = new URLSearchParams();
    const headers: Record<string, string> = {};
    await clientAuthFor(credential('client_secret_basic'))(form, headers);
    expect(headers['authorization']).toBe(`Basic ${Buffer.from('id:secret').toString('base64')}`);
    expect([...form.keys()]).toEqual([]);
  });

  it('picks client_secret_post', async () => {
    const form = new URLSearchParams();
    const headers: Record<string, string> = {};
    await clientAuthFor(credential('client_secret_post'))(form, headers);
    expect(headers).toEqual({});
    expect(form.toString()).toBe('client_id=id&client_secret=secret');
  });
});
