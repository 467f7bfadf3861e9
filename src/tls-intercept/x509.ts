/**
 * The one door to `@peculiar/x509`. Its dependency injection (tsyringe) needs the Reflect
 * metadata polyfill loaded first, and ES modules evaluate their imports in order, so the polyfill
 * comes first here and every other module imports the library through this file.
 *
 * Only modules reached through a dynamic `import()` (interception when `tls_intercept` is set,
 * the `ca init` command) import this one: a proxy without interception never loads either.
 */
import 'reflect-metadata';

export * as x509 from '@peculiar/x509';
