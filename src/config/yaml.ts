import { CORE_SCHEMA, loadAll, Type, YAMLException } from 'js-yaml';
import type { ConfigProblem } from '../errors.js';

/**
 * Nodes that following aliases may add to a document: at least this many, and at most one per
 * character of the text. A text can spell out at most about one node per two characters, so the
 * plain tree stays within a few times what its size allows, while a "billion laughs" document
 * (each level aliasing the one before nine times) is refused after this many copies.
 */
const MIN_ALIAS_NODES = 10_000;

/**
 * Integers exactly as the YAML 1.2 core schema has them (https://yaml.org/spec/1.2.2/#1032-tag-resolution):
 * js-yaml 4 also reads YAML 1.1's `0b1010` and signed `-0x1F`, which are strings in YAML 1.2.
 */
const coreInt = new Type('tag:yaml.org,2002:int', {
  kind: 'scalar',
  resolve: (data: string) => /^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$/.test(data),
  construct: (data: string) =>
    data.startsWith('0o')
      ? Number.parseInt(data.slice(2), 8)
      : data.startsWith('0x')
        ? Number.parseInt(data.slice(2), 16)
        : Number.parseInt(data, 10),
});
/** The core schema, with those integers (the tag keeps its place among null, bool, int, float). */
const SCHEMA = CORE_SCHEMA.extend({ implicit: [coreInt] });
/** js-yaml's own limit on written nesting (`maxDepth`, 100), applied to nesting made by aliases too. */
const MAX_DEPTH = 100;

/**
 * Parses a configuration text as one YAML 1.2 document (core schema: no timestamps, no `<<`
 * merge keys, no `!!binary`; an unknown tag or a duplicate key is an error) into a plain tree:
 * objects, arrays and scalars, no object reachable twice. An empty document is `null`.
 * Returns problems instead of throwing: a syntax error names its line and column.
 */
export function parseYaml(text: string): { value?: unknown; problems: ConfigProblem[] } {
  let documents: unknown[];
  try {
    // json: false (the default) makes a duplicate key an error instead of letting the last one win.
    documents = loadAll(text, null, { schema: SCHEMA, json: false });
  } catch (err) {
    return { problems: [yamlProblem(err)] };
  }
  if (documents.length > 1) {
    return {
      problems: [
        {
          path: '',
          message: `YAML syntax: a configuration is one document; this text holds ${documents.length}`,
        },
      ],
    };
  }
  // No document at all (an empty text, or only comments) reads as an empty one, as YAML 1.2 has it.
  const value = documents.length === 0 ? null : documents[0];
  // js-yaml returns an alias as the anchored object itself. Everything after this step walks the
  // tree as a tree (`${env:}` resolution, validation, freezing), so each alias becomes its own copy,
  // within a budget that stops an alias bomb before it grows.
  const refused = unshare(value, Math.max(MIN_ALIAS_NODES, text.length));
  return refused === undefined
    ? { value, problems: [] }
    : { problems: [{ path: '', message: `YAML: ${refused}` }] };
}

function yamlProblem(err: unknown): ConfigProblem {
  if (err instanceof YAMLException) {
    const { mark } = err;
    return {
      path: mark ? `line ${mark.line + 1}, column ${mark.column + 1}` : '',
      message: `YAML syntax: ${firstLine(err.reason)}`,
    };
  }
  // Anything else js-yaml may throw (a RangeError from a stack too deep, say) is a problem too.
  return { path: '', message: `YAML: ${firstLine(err instanceof Error ? err.message : String(err))}` };
}

function firstLine(text: string): string {
  return text.split('\n')[0]!;
}

/** Why a tree cannot be unshared. */
class Refused extends Error {}

/**
 * Replaces, in place, every second and later reference to an object or array by a deep copy, so
 * that the tree holds independent copies as `yaml`'s `toJS` gave. Returns why it refused: an
 * alias inside the node it names (a cycle), copies beyond `budget` nodes, or nesting beyond
 * {@link MAX_DEPTH}.
 */
function unshare(root: unknown, budget: number): string | undefined {
  const seen = new Set<object>();
  const open = new Set<object>();
  let copied = 0;

  const copy = (node: unknown, depth: number): unknown => {
    if (++copied > budget) {
      throw new Refused(
        `aliases expand the document beyond ${budget} nodes; refused as a resource exhaustion attack`,
      );
    }
    if (node === null || typeof node !== 'object') return node;
    if (depth > MAX_DEPTH) throw new Refused(`aliases nest the document deeper than ${MAX_DEPTH} levels`);
    if (Array.isArray(node)) return node.map((item) => copy(item, depth + 1));
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(node)) {
      setOwn(out, key, copy((node as Record<string, unknown>)[key], depth + 1));
    }
    return out;
  };

  const visit = (node: unknown, depth: number): unknown => {
    if (node === null || typeof node !== 'object') return node;
    if (open.has(node)) throw new Refused('an alias refers to a node that contains it');
    if (seen.has(node)) return copy(node, depth);
    seen.add(node);
    open.add(node);
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) node[i] = visit(node[i], depth + 1);
    } else {
      const obj = node as Record<string, unknown>;
      for (const key of Object.keys(obj)) {
        const value = obj[key];
        const unshared = visit(value, depth + 1);
        if (unshared !== value) setOwn(obj, key, unshared);
      }
    }
    open.delete(node);
    return node;
  };

  try {
    visit(root, 0);
    return undefined;
  } catch (err) {
    if (err instanceof Refused) return err.message;
    throw err;
  }
}

/** `obj[key] = value`, but a key `__proto__` stays an own property instead of setting the prototype. */
function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') {
    Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    obj[key] = value;
  }
}
