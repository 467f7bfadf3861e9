import type { FileSet } from '../files/live-file.js';
import type { AssertionKey } from './assertion.js';
import type { SigningKeyConfig } from './signing-key.js';
import { algorithmsFor, certificateThumbprint, parsePrivateKey } from './signing-key.js';

/**
 * The current signing key of a configured key file, parsed again only when the file (or its
 * certificate) changes, so a rotated key is used from the next token request on.
 */
export function liveSigningKey(cfg: SigningKeyConfig, files: FileSet): () => AssertionKey {
  const keyValue = files.value(cfg.key, false);
  const certValue = cfg.certificate ? files.value(cfg.certificate, false) : undefined;
  let lastKeyText: string | undefined;
  let lastCertText: string | undefined;
  let current: AssertionKey | undefined;
  return () => {
    const keyText = keyValue.read();
    const certText = certValue?.read();
    if (current === undefined || keyText !== lastKeyText || certText !== lastCertText) {
      const x5tS256 = certText !== undefined ? certificateThumbprint(certText) : undefined;
      const key = parsePrivateKey(keyText);
      const usable = algorithmsFor(key);
      if (cfg.algInferred ? usable.length === 0 : !usable.includes(cfg.alg)) {
        throw new Error(
          `the rotated key (${key.asymmetricKeyType}) cannot sign with ${cfg.algInferred ? 'any supported algorithm' : `signing_alg ${cfg.alg}`}`,
        );
      }
      current = {
        key,
        alg: cfg.algInferred ? usable[0]! : cfg.alg,
        ...(cfg.keyId !== undefined ? { keyId: cfg.keyId } : {}),
        ...(x5tS256 !== undefined ? { x5tS256 } : {}),
      };
      lastKeyText = keyText;
      lastCertText = certText;
    }
    return current;
  };
}
