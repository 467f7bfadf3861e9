/**
 * undici, by its entry file. Bun answers the bare specifier `undici` with a built-in stand-in
 * whose Pool, Agent and request do nothing; the entry file is the real package on Node and on
 * Bun alike, so the proxy behaves the same wherever it is started (`npm run bench` measures it on
 * Bun as `token-injector@bun`).
 */

export { Agent, buildConnector, Dispatcher, Pool, request } from 'undici/index.js';
