import { isAbsolute, resolve } from 'node:path';

/** Where `${env:NAME}` and `${file:PATH}` references are looked up. Injected so tests need no real env. */
export interface ConfigSources {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly readFile: (path: string) => string;
  /** Relative `${file:}` paths resolve against this directory (the config file's). */
  readonly baseDir?: string;
}

const REFERENCE = /\$\$\{|\$\{([a-z]+):([^}]*)\}|\$\{/g;

/**
 * Replaces every `${env:NAME}` and `${file:PATH}` in `text`. `$${` stands for a literal `${`.
 * Throws an Error whose message explains the failing reference; the caller adds the key path.
 * A missing variable or an unreadable file is an error, never an empty secret.
 */
export function interpolate(text: string, sources: ConfigSources): string {
  if (!text.includes('${')) return text;
  return text.replace(REFERENCE, (whole, kind: string | undefined, ref: string | undefined) => {
    if (whole === '$${') return '${';
    // A typo such as "${env:X" or "${ENV:X}" must fail, not become the secret's literal value.
    if (kind === undefined) {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the message shows the literal syntax
      throw new Error('malformed reference: write ${env:NAME} or ${file:PATH}, or $${ for a literal "${"');
    }
    if (kind === 'env') {
      const value = sources.env[ref as string];
      if (value === undefined) throw new Error(`environment variable ${ref} is not set`);
      return value;
    }
    if (kind === 'file') {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the message shows the literal syntax
      if (!ref) throw new Error('${file:} needs a path');
      const path = isAbsolute(ref) || !sources.baseDir ? ref : resolve(sources.baseDir, ref);
      let content: string;
      try {
        content = sources.readFile(path);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw new Error(`cannot read file ${path}${code ? ` (${code})` : ''}`);
      }
      // Secrets written by `echo` or Kubernetes tooling end in a newline that is not part of them.
      return content.replace(/\r?\n$/, '');
    }
    throw new Error(`unsupported reference \${${kind}:…}; use \${env:NAME} or \${file:PATH}`);
  });
}
