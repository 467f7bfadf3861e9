// The Dockerfile, the Kubernetes manifests and the config they carry are only ever checked when
// someone deploys them; these tests make them agree with each other (ports, paths, secret keys,
// projected tokens) and with the config loader, so a rename in one place cannot silently break
// an example. Each directory of deploy/kubernetes that holds YAML is one example, checked alone.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parseDocument } from 'yaml';
import type { ConfigSources } from '../../src/config/load.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const kubernetesDir = path.join(root, 'deploy', 'kubernetes');
/** The client-secret example (deploy/kubernetes/) and the secretless one. */
const SECRET_EXAMPLE = '.';
const WORKLOAD_IDENTITY_EXAMPLE = 'workload-identity';
/** Replicas sharing their tokens through a Redis of their own (`shared_cache`). */
const FLEET_EXAMPLE = 'fleet';
/** The audience Microsoft Entra ID requires in tokens of federated identity credentials. */
const ENTRA_FEDERATION_AUDIENCE = 'api://AzureADTokenExchange';

interface Probe {
  httpGet?: { path?: string; port?: number | string; host?: string };
}
interface VolumeMount {
  name: string;
  mountPath: string;
  subPath?: string;
  readOnly?: boolean;
}
interface SecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  readOnlyRootFilesystem?: boolean;
  allowPrivilegeEscalation?: boolean;
  capabilities?: { drop?: string[] };
}
interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  restartPolicy?: string;
  ports?: { name?: string; containerPort: number; protocol?: string }[];
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
  volumeMounts?: VolumeMount[];
  startupProbe?: Probe;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  securityContext?: SecurityContext;
}
interface KeyToPath {
  key: string;
  path: string;
}
interface ServiceAccountTokenProjection {
  audience?: string;
  expirationSeconds?: number;
  path: string;
}
interface ProjectedSource {
  serviceAccountToken?: ServiceAccountTokenProjection;
  secret?: { name: string; items?: KeyToPath[] };
  configMap?: { name: string; items?: KeyToPath[] };
}
interface Volume {
  name: string;
  configMap?: { name: string; items?: KeyToPath[] };
  secret?: { secretName: string; items?: KeyToPath[] };
  projected?: { sources: ProjectedSource[] };
}
interface PodSpec {
  serviceAccountName?: string;
  initContainers?: Container[];
  containers: Container[];
  volumes?: Volume[];
  securityContext?: SecurityContext;
}
type Labels = Record<string, string>;
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Labels; annotations?: Record<string, string> };
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  spec?: PodSpec & {
    template?: { metadata?: { labels?: Labels }; spec: PodSpec };
    replicas?: number;
    selector?: { matchLabels?: Labels };
  };
}
/** The parts of a Service and a NetworkPolicy these tests look at. */
interface ServiceSpec {
  selector?: Labels;
  ports?: { name?: string; port: number; targetPort?: number | string; protocol?: string }[];
}
interface NetworkPolicySpec {
  podSelector?: { matchLabels?: Labels; matchExpressions?: unknown[] };
  policyTypes?: string[];
  ingress?: {
    from?: {
      podSelector?: { matchLabels?: Labels; matchExpressions?: unknown[] };
      namespaceSelector?: unknown;
      ipBlock?: unknown;
    }[];
    ports?: { protocol?: string; port?: number | string }[];
  }[];
}
/** The parts of a token-injector config these tests look at. */
interface SidecarConfig {
  listen?: string;
  admin?: { listen?: string };
  credentials?: Record<string, Record<string, unknown>>;
  shared_cache?: { url?: string; password?: string; encryption_keys?: string[] };
}

/** Directories under deploy/kubernetes (relative, "." for itself) that hold YAML files. */
function yamlDirectories(dir = kubernetesDir): string[] {
  const entries = readdirSync(dir, { withFileTypes: true });
  const here = entries.some((e) => e.isFile() && /\.ya?ml$/.test(e.name))
    ? [path.relative(kubernetesDir, dir) || '.']
    : [];
  return [
    ...here,
    ...entries.filter((e) => e.isDirectory()).flatMap((e) => yamlDirectories(path.join(dir, e.name))),
  ];
}

/** The manifests of one example: the YAML files directly in `dir`, not in its subdirectories. */
function loadManifests(dir: string): { file: string; manifest: Manifest }[] {
  const out: { file: string; manifest: Manifest }[] = [];
  for (const file of readdirSync(dir).filter((f) => /\.ya?ml$/.test(f))) {
    for (const doc of parseAllDocuments(readFileSync(path.join(dir, file), 'utf8'))) {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
      const manifest = doc.toJS() as Manifest | null;
      if (manifest) out.push({ file, manifest });
    }
  }
  return out;
}

function only<T>(items: T[], what: string): T {
  if (items.length !== 1) throw new Error(`expected exactly one ${what}, found ${items.length}`);
  return items[0]!;
}

function parseListen(value: unknown): { host: string; port: number } {
  const m = /^(\[[^\]]*\]|[^:]*):(\d+)$/.exec(String(value));
  if (!m) throw new Error(`not a host:port listen address: ${String(value)}`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

interface DockerInstruction {
  keyword: string;
  value: string;
}
interface DockerStage {
  from: string;
  alias?: string;
  instructions: DockerInstruction[];
}

function parseDockerfile(text: string): DockerStage[] {
  const stages: DockerStage[] = [];
  const logical = text
    .split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n');
  for (const line of logical) {
    const m = /^\s*([A-Za-z]+)\s+(.*?)\s*$/.exec(line);
    if (!m) continue;
    const keyword = m[1]!.toUpperCase();
    const value = m[2]!;
    if (keyword === 'FROM') {
      const from = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(value);
      if (!from) throw new Error(`cannot parse FROM ${value}`);
      stages.push({ from: from[1]!, alias: from[2], instructions: [] });
    } else {
      const stage = stages.at(-1);
      if (!stage) throw new Error(`${keyword} before FROM`);
      stage.instructions.push({ keyword, value });
    }
  }
  return stages;
}

function jsonForm(stage: DockerStage, keyword: string): string[] {
  const instruction = stage.instructions.filter((i) => i.keyword === keyword).at(-1);
  if (!instruction) throw new Error(`final stage has no ${keyword}`);
  // Shell form would wrap node in /bin/sh, which does not forward SIGTERM.
  const parsed: unknown = JSON.parse(instruction.value);
  if (!Array.isArray(parsed) || !parsed.every((p) => typeof p === 'string')) {
    throw new Error(`${keyword} is not in JSON (exec) form`);
  }
  return parsed;
}

function configArgument(args: readonly string[]): string | undefined {
  for (const [i, arg] of args.entries()) {
    if (arg === '--config') return args[i + 1];
    if (arg.startsWith('--config=')) return arg.slice('--config='.length);
  }
  return undefined;
}

/** The file path a key of a ConfigMap/Secret volume appears at, for each key it exposes. */
function projectedFiles(
  mount: VolumeMount,
  keys: readonly string[],
  items?: KeyToPath[],
): Map<string, string> {
  const files = new Map<string, string>();
  const paths = items ? items.map((i) => [i.key, i.path] as const) : keys.map((k) => [k, k] as const);
  for (const [key, relative] of paths) {
    if (mount.subPath === undefined) files.set(path.posix.join(mount.mountPath, relative), key);
    else if (mount.subPath === relative) files.set(mount.mountPath, key);
  }
  return files;
}

function resolvePort(container: Container, port: number | string | undefined): number | undefined {
  if (typeof port === 'number') return port;
  if (typeof port === 'string' && /^\d+$/.test(port)) return Number(port);
  return container.ports?.find((p) => p.name === port)?.containerPort;
}

const dockerfileText = readFileSync(path.join(root, 'Dockerfile'), 'utf8');
const stages = parseDockerfile(dockerfileText);
const finalStage = stages.at(-1)!;
const dockerCmd = jsonForm(finalStage, 'CMD');

/** Where a file the sidecar reads comes from: a Secret key or a projected service-account token. */
type Backing =
  | { kind: 'secret'; mount: VolumeMount; secret: Manifest | undefined; key: string }
  | { kind: 'serviceAccountToken'; mount: VolumeMount; volume: Volume; token: ServiceAccountTokenProjection };

/** One example directory, resolved: its workload, the sidecar, its mounts and its config. */
class Example {
  readonly manifests: { file: string; manifest: Manifest }[];
  readonly workload: Manifest;
  readonly podSpec: PodSpec;
  readonly initContainers: Container[];
  readonly sidecar: Container;
  readonly appContainers: Container[];
  readonly volumes: Map<string, Volume>;
  readonly sidecarArgs: string[];
  readonly configPath: string | undefined;
  /** Where the sidecar sees each ConfigMap key, and which ConfigMap it comes from. */
  readonly configFiles = new Map<string, { configMap: Manifest; key: string }>();
  readonly configText: string;
  readonly configDoc: ReturnType<typeof parseDocument>;
  readonly config: SidecarConfig;
  readonly fileReferences: string[];
  readonly envReferences: string[];

  constructor(readonly dir: string) {
    this.manifests = loadManifests(path.join(kubernetesDir, dir));
    // Other workloads (the fleet example's Redis) are checked by their example's own tests.
    this.workload = only(
      this.workloads.filter((w) => containersOf(podSpecOf(w)!).some(isTokenInjector)),
      `Pod or workload running token-injector in ${dir}`,
    );
    this.podSpec = podSpecOf(this.workload)!;
    this.initContainers = this.podSpec.initContainers ?? [];
    this.sidecar = only(
      containersOf(this.podSpec).filter(isTokenInjector),
      `token-injector container in ${dir}`,
    );
    this.appContainers = this.podSpec.containers.filter((c) => c !== this.sidecar);
    this.volumes = new Map((this.podSpec.volumes ?? []).map((v) => [v.name, v]));
    this.sidecarArgs = this.sidecar.args ?? dockerCmd;
    this.configPath = configArgument(this.sidecarArgs);
    for (const mount of this.sidecar.volumeMounts ?? []) {
      const source = this.volumes.get(mount.name)?.configMap;
      if (!source) continue;
      const configMap = this.ofKind('ConfigMap').find((c) => c.metadata.name === source.name);
      if (!configMap) continue;
      for (const [file, key] of projectedFiles(mount, Object.keys(configMap.data ?? {}), source.items)) {
        this.configFiles.set(file, { configMap, key });
      }
    }
    const configSource = this.configPath === undefined ? undefined : this.configFiles.get(this.configPath);
    this.configText = configSource?.configMap.data?.[configSource.key] ?? '';
    this.configDoc = parseDocument(this.configText);
    this.config = (this.configDoc.toJS() ?? {}) as SidecarConfig;
    // Same grammar as the loader's interpolation: `$${` is an escaped literal, not a reference.
    const references = [...this.configText.matchAll(/\$\$\{|\$\{([a-z]+):([^}]*)\}/g)].filter(
      (m) => m[1] !== undefined,
    );
    this.fileReferences = references.filter((m) => m[1] === 'file').map((m) => m[2]!);
    this.envReferences = references.filter((m) => m[1] === 'env').map((m) => m[2]!);
  }

  ofKind(kind: string): Manifest[] {
    return this.manifests.filter((m) => m.manifest.kind === kind).map((m) => m.manifest);
  }

  /** Pods, and workloads with a pod template. */
  get workloads(): Manifest[] {
    return this.manifests.map((m) => m.manifest).filter((m) => podSpecOf(m) !== undefined);
  }

  get allContainers(): Container[] {
    return [...this.initContainers, ...this.podSpec.containers];
  }

  /** Volumes that carry credentials: Secrets, and projected Secrets or service-account tokens. */
  get credentialVolumes(): string[] {
    return [...this.volumes.values()]
      .filter((v) => v.secret || v.projected?.sources.some((s) => s.secret || s.serviceAccountToken))
      .map((v) => v.name);
  }

  /** The Secret key or projected token that backs a file the sidecar reads, through its mounts. */
  backing(file: string): Backing | undefined {
    for (const mount of this.sidecar.volumeMounts ?? []) {
      const volume = this.volumes.get(mount.name);
      for (const token of (volume?.projected?.sources ?? []).flatMap((s) => s.serviceAccountToken ?? [])) {
        const at =
          mount.subPath === undefined
            ? path.posix.join(mount.mountPath, token.path)
            : mount.subPath === token.path
              ? mount.mountPath
              : undefined;
        if (at === file) return { kind: 'serviceAccountToken', mount, volume: volume!, token };
      }
      const source = volume?.secret;
      if (!source) continue;
      const secret = this.ofKind('Secret').find((s) => s.metadata.name === source.secretName);
      const keys = secretKeys(secret);
      const key = projectedFiles(mount, keys, source.items).get(file);
      if (key !== undefined) return { kind: 'secret', mount, secret, key };
      // A path under the mount whose key is missing is reported by the caller, not skipped.
      if (mount.subPath === undefined && file.startsWith(`${mount.mountPath.replace(/\/$/, '')}/`)) {
        return { kind: 'secret', mount, secret, key: path.posix.relative(mount.mountPath, file) };
      }
    }
    return undefined;
  }

  /**
   * What the config loader sees in the pod: the sidecar's env, and the files its mounts provide
   * (a dummy secret for a present Secret key, a dummy JWT for a projected token). `read` lists
   * every file the loader asked for.
   */
  loaderSources(): ConfigSources & { read: string[] } {
    const read: string[] = [];
    const env = Object.fromEntries(
      (this.sidecar.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]),
    );
    return {
      env,
      baseDir: path.posix.dirname(this.configPath ?? '/'),
      read,
      readFile: (file: string) => {
        read.push(file);
        const backing = this.backing(file);
        if (backing?.kind === 'serviceAccountToken') return DUMMY_SERVICE_ACCOUNT_TOKEN;
        if (backing?.kind === 'secret' && secretKeys(backing.secret).includes(backing.key)) {
          return DUMMY_SECRET_FILE;
        }
        throw Object.assign(new Error(`ENOENT: no such file or directory, open '${file}'`), {
          code: 'ENOENT',
        });
      },
    };
  }
}

function podSpecOf(manifest: Manifest): PodSpec | undefined {
  return manifest.kind === 'Pod' ? manifest.spec : manifest.spec?.template?.spec;
}

function containersOf(pod: PodSpec): Container[] {
  return [...(pod.initContainers ?? []), ...pod.containers];
}

function isTokenInjector(container: Container): boolean {
  return container.name === 'token-injector' || /token-injector/.test(container.image ?? '');
}

/** Pod labels `selector` picks: every label it names, with its value (matchLabels semantics). */
function selects(selector: Labels | undefined, labels: Labels | undefined): boolean {
  const wanted = Object.entries(selector ?? {});
  return wanted.length > 0 && wanted.every(([k, v]) => labels?.[k] === v);
}

function secretKeys(secret: Manifest | undefined): string[] {
  return [...Object.keys(secret?.stringData ?? {}), ...Object.keys(secret?.data ?? {})];
}

/**
 * What a Secret key's file holds in these tests: `openssl rand -base64 32` output and a newline,
 * which passes both as a client secret or password and as a `shared_cache` encryption key.
 */
const DUMMY_SECRET_FILE = `${Buffer.alloc(32, 0x5a).toString('base64')}\n`;

/** Shaped like the kubelet's file: a compact JWS (never verified by the loader), and a newline. */
const DUMMY_SERVICE_ACCOUNT_TOKEN = `${[
  { alg: 'RS256', kid: 'cluster-key' },
  { iss: 'https://oidc.example.com', sub: 'system:serviceaccount:default:orders-client-wi', aud: ['x'] },
]
  .map((part) => Buffer.from(JSON.stringify(part)).toString('base64url'))
  .join('.')}.c2lnbmF0dXJl\n`;

const examples = [SECRET_EXAMPLE, WORKLOAD_IDENTITY_EXAMPLE, FLEET_EXAMPLE].map((dir) => new Example(dir));
const secretExample = examples[0]!;
const workloadIdentity = examples[1]!;
const fleet = examples[2]!;

describe('deploy/kubernetes', () => {
  it('holds no YAML outside the examples these tests check', () => {
    expect(yamlDirectories().sort()).toEqual(examples.map((e) => e.dir).sort());
  });
});

for (const example of examples) {
  const { podSpec, sidecar, initContainers, appContainers, volumes, config } = example;

  describe(`deploy/kubernetes/${example.dir === '.' ? '' : `${example.dir}/`} manifests`, () => {
    it('has a ConfigMap and the workload, all with a kind and a name', () => {
      expect(example.ofKind('ConfigMap').length).toBeGreaterThanOrEqual(1);
      for (const { file, manifest } of example.manifests) {
        expect(manifest.apiVersion, file).toEqual(expect.any(String));
        expect(manifest.metadata?.name, file).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      }
    });

    it('runs token-injector as a native sidecar with the image entrypoint', () => {
      expect(initContainers).toContain(sidecar);
      expect(sidecar.restartPolicy).toBe('Always');
      // A `command` would replace the image's ENTRYPOINT and bypass `node /app/dist/cli/main.js`.
      expect(sidecar.command).toBeUndefined();
      expect(example.sidecarArgs[0]).toBe('run');
    });

    it('mounts the ConfigMap config exactly where --config points, and agrees with the image default', () => {
      expect(example.configPath).toBeDefined();
      expect([...example.configFiles.keys()]).toContain(example.configPath);
      expect(configArgument(dockerCmd)).toBe(example.configPath);
      const mount = sidecar.volumeMounts?.find((m) => volumes.get(m.name)?.configMap);
      expect(mount?.readOnly).toBe(true);
    });

    it('carries a config that parses as YAML', () => {
      expect(example.configDoc.errors.map((e) => e.message)).toEqual([]);
      expect(config.listen).toEqual(expect.any(String));
      expect(config.admin?.listen).toEqual(expect.any(String));
    });

    it('probes the admin port on /healthz and /readyz, and declares it', () => {
      const admin = parseListen(config.admin?.listen);
      // Probes connect to the pod IP, so a loopback-only admin listener would fail them all.
      expect(isLoopback(admin.host)).toBe(false);
      expect(sidecar.ports?.map((p) => p.containerPort)).toContain(admin.port);

      expect(sidecar.livenessProbe?.httpGet?.path).toBe('/healthz');
      expect(sidecar.readinessProbe?.httpGet?.path).toBe('/readyz');
      expect(['/healthz', '/readyz']).toContain(sidecar.startupProbe?.httpGet?.path);
      for (const probe of [sidecar.livenessProbe, sidecar.readinessProbe, sidecar.startupProbe]) {
        expect(resolvePort(sidecar, probe?.httpGet?.port)).toBe(admin.port);
        expect(probe?.httpGet?.host).toBeUndefined();
      }
    });

    it('points the app at the proxy port on loopback', () => {
      const proxy = parseListen(config.listen);
      // Loopback keeps the token-bearing proxy reachable from inside the pod only.
      expect(isLoopback(proxy.host)).toBe(true);
      expect(appContainers.length).toBeGreaterThanOrEqual(1);
      for (const app of appContainers) {
        const proxyVars = (app.env ?? []).filter((e) => e.name.toUpperCase() === 'HTTP_PROXY');
        expect(proxyVars.length, app.name).toBeGreaterThanOrEqual(1);
        for (const variable of proxyVars) {
          const url = new URL(variable.value ?? '');
          expect(url.protocol).toBe('http:');
          expect(isLoopback(url.hostname.replace(/^\[|\]$/g, ''))).toBe(true);
          expect(Number(url.port)).toBe(proxy.port);
        }
        const noProxy = (app.env ?? []).filter((e) => e.name.toUpperCase() === 'NO_PROXY');
        expect(noProxy.length, app.name).toBeGreaterThanOrEqual(1);
        for (const variable of noProxy) {
          const hosts = (variable.value ?? '').split(',');
          expect(hosts).toContain('localhost');
          expect(hosts).toContain('127.0.0.1');
          // unmatched: deny refuses every other host: in-cluster services must bypass the proxy.
          expect(hosts).toContain('.svc');
          expect(hosts).toContain('.cluster.local');
        }
      }
    });

    it('backs every env reference with an env var of the sidecar', () => {
      const names = (sidecar.env ?? []).map((e) => e.name);
      for (const name of example.envReferences) expect(names, name).toContain(name);
    });

    it('keeps secrets and projected tokens out of the app containers', () => {
      const credentialVolumes = example.credentialVolumes;
      expect(credentialVolumes.length).toBeGreaterThanOrEqual(1);
      for (const app of appContainers) {
        for (const mount of app.volumeMounts ?? []) expect(credentialVolumes).not.toContain(mount.name);
      }
    });

    it('runs every container as non-root, read-only, without privilege escalation or capabilities', () => {
      for (const container of example.allContainers) {
        const context = container.securityContext ?? {};
        const nonRoot = context.runAsNonRoot ?? podSpec.securityContext?.runAsNonRoot;
        expect(nonRoot, container.name).toBe(true);
        const uid = context.runAsUser ?? podSpec.securityContext?.runAsUser;
        if (uid !== undefined) expect(uid, container.name).toBeGreaterThan(0);
        expect(context.readOnlyRootFilesystem, container.name).toBe(true);
        expect(context.allowPrivilegeEscalation, container.name).toBe(false);
        expect(context.capabilities?.drop, container.name).toContain('ALL');
      }
    });

    it('carries a config the project loader accepts when the mounted files are present', async () => {
      const { validateConfigText } = await import('../../src/config/load.js');
      expect(validateConfigText(example.configText, example.loaderSources())).toEqual([]);
    });
  });
}

for (const example of [secretExample, fleet]) {
  describe(`deploy/kubernetes/${example.dir === '.' ? '' : `${example.dir}/`} (files from Secrets)`, () => {
    const { sidecar } = example;

    it('has a Secret', () => {
      expect(example.ofKind('Secret').length).toBeGreaterThanOrEqual(1);
    });

    it('backs every file reference with a key of a Secret mounted read-only into the sidecar', () => {
      expect(example.fileReferences.length).toBeGreaterThanOrEqual(1);
      for (const file of example.fileReferences) {
        const backing = example.backing(file);
        expect(backing?.kind, file).toBe('secret');
        if (backing?.kind !== 'secret') continue;
        expect(backing.mount.readOnly, file).toBe(true);
        expect(backing.secret, `Secret for ${file}`).toBeDefined();
        expect(secretKeys(backing.secret), file).toContain(backing.key);
        expect(path.posix.basename(file)).toBe(path.posix.basename(backing.key));
      }
      expect(sidecar.volumeMounts?.some((m) => example.volumes.get(m.name)?.secret)).toBe(true);
    });
  });
}

describe('deploy/kubernetes/fleet/ (shared_cache on a Redis of its own)', () => {
  const { sidecar, config } = fleet;
  const shared = config.shared_cache ?? {};
  const client = fleet.workload;
  const clientLabels = client.spec?.template?.metadata?.labels;
  const redis = only(
    fleet.workloads.filter((w) => w !== client),
    'Redis workload in deploy/kubernetes/fleet',
  );
  const redisPod = podSpecOf(redis)!;
  const redisLabels = redis.spec?.template?.metadata?.labels;
  const redisContainer = only(
    redisPod.containers.filter((c) => /(^|\/)(redis|valkey)(:|@|$)/.test(c.image ?? '')),
    'redis or valkey container',
  );
  const redisPort = redisContainer.ports?.find((p) => p.containerPort === 6379);
  const url = new URL(shared.url ?? 'redis://missing');

  /** The value of `flag` in the Redis command line (`--requirepass X`). */
  function flag(name: string): string | undefined {
    const args = [...(redisContainer.command ?? []), ...(redisContainer.args ?? [])];
    const i = args.indexOf(name);
    return i < 0 ? undefined : args[i + 1];
  }

  it('runs several replicas that share their tokens through shared_cache', () => {
    expect(client.spec?.replicas).toBeGreaterThanOrEqual(2);
    expect(url.protocol).toBe('redis:');
    // Secrets by reference only: an inline password or key would sit in the ConfigMap.
    expect(shared.password).toMatch(/^\$\{file:[^}]+\}$/);
    expect(shared.encryption_keys?.length).toBeGreaterThanOrEqual(1);
    for (const key of shared.encryption_keys ?? []) expect(key).toMatch(/^\$\{file:[^}]+\}$/);
  });

  it('validates with the encryption key and the password read from the mounted Secret', async () => {
    const { parseConfigText } = await import('../../src/config/load.js');
    const sources = fleet.loaderSources();
    const { config: loaded, problems } = parseConfigText(fleet.configText, sources);
    expect(problems).toEqual([]);
    expect(loaded?.sharedCache?.encryptionKeys.map((k) => k.length)).toEqual([32]);
    expect(loaded?.warnings.filter((w) => w.path.startsWith('shared_cache'))).toEqual([]);
    const files = [shared.password, ...(shared.encryption_keys ?? [])].map((r) =>
      String(r).replace(/^\$\{file:([^}]+)\}$/, '$1'),
    );
    expect(sources.read).toEqual(expect.arrayContaining(files));
  });

  it('points shared_cache.url at the Redis Service, which selects the Redis pods on their port', () => {
    const service = only(
      fleet.ofKind('Service').filter((s) => s.metadata.name === url.hostname.split('.')[0]),
      `Service ${url.hostname}`,
    );
    const spec = service.spec as unknown as ServiceSpec;
    expect(selects(spec.selector, redisLabels)).toBe(true);
    expect(selects(spec.selector, clientLabels)).toBe(false);
    const port = spec.ports?.find((p) => p.port === Number(url.port || 6379));
    expect(port, `Service port ${url.port || 6379}`).toBeDefined();
    const target = port?.targetPort ?? port?.port;
    expect(resolvePort(redisContainer, target)).toBe(6379);
    expect(redisPort).toBeDefined();
  });

  it('starts Redis with --requirepass from the Secret key the sidecar reads as shared_cache.password', () => {
    const password = flag('--requirepass');
    const variable = /^\$\(([A-Za-z_][A-Za-z0-9_]*)\)$/.exec(password ?? '')?.[1];
    expect(variable, `--requirepass ${password}`).toBeDefined();
    const ref = redisContainer.env?.find((e) => e.name === variable)?.valueFrom?.secretKeyRef;
    expect(ref, `env ${variable} from a Secret`).toBeDefined();
    const file = String(shared.password).replace(/^\$\{file:([^}]+)\}$/, '$1');
    const backing = fleet.backing(file);
    expect(backing?.kind).toBe('secret');
    if (backing?.kind !== 'secret') return;
    expect(backing.secret?.metadata.name).toBe(ref?.name);
    expect(backing.key).toBe(ref?.key);
  });

  it('keeps the encryption key away from Redis', () => {
    const keyFiles = (shared.encryption_keys ?? []).map((r) => r.replace(/^\$\{file:([^}]+)\}$/, '$1'));
    const keys = keyFiles.map((f) => fleet.backing(f)).filter((b) => b?.kind === 'secret');
    expect(keys.length).toBe(keyFiles.length);
    for (const backing of keys) {
      if (backing?.kind !== 'secret') continue;
      for (const e of redisContainer.env ?? []) {
        const ref = e.valueFrom?.secretKeyRef;
        expect(ref?.name === backing.secret?.metadata.name && ref?.key === backing.key, e.name).toBe(false);
      }
      // No volume of the Redis pod carries the Secret at all.
      for (const volume of redisPod.volumes ?? []) {
        expect(volume.secret?.secretName, volume.name).not.toBe(backing.secret?.metadata.name);
      }
    }
  });

  it('persists nothing: a cache needs no volume that outlives the pod', () => {
    expect(flag('--save')).toBe('');
    expect(flag('--appendonly')).toBe('no');
    for (const volume of redisPod.volumes ?? []) {
      expect(
        Object.keys(volume).filter((k) => k !== 'name'),
        volume.name,
      ).toEqual(['emptyDir']);
    }
  });

  it('lets only pods with the client label reach Redis, and only on its port', () => {
    const policies = fleet
      .ofKind('NetworkPolicy')
      .map((p) => p.spec as unknown as NetworkPolicySpec)
      .filter((p) => selects(p.podSelector?.matchLabels, redisLabels));
    const policy = only(policies, 'NetworkPolicy selecting the Redis pods');
    expect(policy.podSelector?.matchExpressions).toBeUndefined();
    expect(policy.policyTypes).toContain('Ingress');
    expect(policy.ingress?.length).toBeGreaterThanOrEqual(1);
    for (const rule of policy.ingress ?? []) {
      // A rule without `from` (or with an empty peer) admits every source.
      expect(rule.from?.length).toBeGreaterThanOrEqual(1);
      for (const peer of rule.from ?? []) {
        expect(peer.ipBlock).toBeUndefined();
        expect(peer.namespaceSelector).toBeUndefined();
        expect(peer.podSelector?.matchExpressions).toBeUndefined();
        // The token-injector pods carry the label; Redis itself does not need it.
        expect(selects(peer.podSelector?.matchLabels, clientLabels), JSON.stringify(peer)).toBe(true);
      }
      expect(rule.ports?.length).toBeGreaterThanOrEqual(1);
      for (const port of rule.ports ?? []) {
        expect(port.protocol ?? 'TCP').toBe('TCP');
        expect(resolvePort(redisContainer, port.port)).toBe(6379);
      }
    }
    // The app's own pods elsewhere (the examples of ../) lack the label, and so cannot reach Redis.
    const rule = policy.ingress?.[0]?.from?.[0]?.podSelector?.matchLabels;
    expect(selects(rule, secretExample.workload.spec?.template?.metadata?.labels)).toBe(false);
  });

  it('runs Redis as non-root, read-only, without privilege escalation or capabilities', () => {
    const context = redisContainer.securityContext ?? {};
    expect(context.runAsNonRoot ?? redisPod.securityContext?.runAsNonRoot).toBe(true);
    const uid = context.runAsUser ?? redisPod.securityContext?.runAsUser;
    expect(uid).toBeGreaterThan(0);
    expect(context.readOnlyRootFilesystem).toBe(true);
    expect(context.allowPrivilegeEscalation).toBe(false);
    expect(context.capabilities?.drop).toContain('ALL');
  });

  it('gives the sidecar the Secret and leaves it out of the app container', () => {
    const mounts = (sidecar.volumeMounts ?? []).filter((m) => fleet.volumes.get(m.name)?.secret);
    expect(mounts.map((m) => fleet.volumes.get(m.name)?.secret?.secretName)).toContain('token-cache');
    for (const app of fleet.appContainers) {
      expect((app.env ?? []).filter((e) => e.valueFrom?.secretKeyRef)).toEqual([]);
    }
  });
});

describe('deploy/kubernetes/workload-identity/ (Entra ID, no secret)', () => {
  const { sidecar, volumes, podSpec, config } = workloadIdentity;
  const credentials = Object.entries(config.credentials ?? {});
  const assertionFiles = credentials
    .map(([, c]) => c['client_assertion_file'])
    .filter((f): f is string => typeof f === 'string');
  const tokenVolumes = [...volumes.values()].filter((v) =>
    v.projected?.sources.some((s) => s.serviceAccountToken),
  );

  it('authenticates with private_key_jwt and a client assertion file, never a client secret', () => {
    expect(credentials.length).toBeGreaterThanOrEqual(1);
    for (const [name, credential] of credentials) {
      expect(credential['auth_method'], name).toBe('private_key_jwt');
      expect(credential['client_assertion_file'], name).toEqual(expect.any(String));
      expect(credential['client_secret'], name).toBeUndefined();
      expect(credential['private_key_file'], name).toBeUndefined();
    }
    expect(workloadIdentity.fileReferences).toEqual([]);
  });

  it('reads the client assertion from the projected service-account token, under its mountPath', () => {
    expect(tokenVolumes.length).toBeGreaterThanOrEqual(1);
    for (const file of assertionFiles) {
      const backing = workloadIdentity.backing(file);
      expect(backing?.kind, file).toBe('serviceAccountToken');
      if (backing?.kind !== 'serviceAccountToken') continue;
      expect(path.posix.dirname(file)).toBe(
        path.posix.join(backing.mount.mountPath, path.posix.dirname(backing.token.path)),
      );
      expect(path.posix.basename(file)).toBe(path.posix.basename(backing.token.path));
      expect(backing.mount.subPath).toBeUndefined();
      expect(backing.mount.readOnly, file).toBe(true);
    }
  });

  it('projects the token for the Entra ID federation audience, with a lifetime the kubelet accepts', () => {
    for (const volume of tokenVolumes) {
      for (const source of volume.projected!.sources) {
        const token = source.serviceAccountToken;
        if (!token) continue;
        expect(token.audience, volume.name).toBe(ENTRA_FEDERATION_AUDIENCE);
        // The API server refuses less than 10 minutes; a day is a sanity bound, not a limit.
        expect(token.expirationSeconds, volume.name).toBeGreaterThanOrEqual(600);
        expect(token.expirationSeconds, volume.name).toBeLessThanOrEqual(86_400);
      }
    }
  });

  it('mounts no Secret and ships no Secret', () => {
    expect(workloadIdentity.ofKind('Secret')).toEqual([]);
    for (const volume of volumes.values()) {
      expect(volume.secret, volume.name).toBeUndefined();
      expect(volume.projected?.sources.filter((s) => s.secret) ?? [], volume.name).toEqual([]);
    }
  });

  it('runs as the ServiceAccount it defines, whose client-id annotation is the config client_id', () => {
    const account = only(workloadIdentity.ofKind('ServiceAccount'), 'ServiceAccount');
    expect(podSpec.serviceAccountName).toBe(account.metadata.name);
    const env = Object.fromEntries((sidecar.env ?? []).map((e) => [e.name, e.value]));
    const clientIds = credentials.map(([, c]) =>
      String(c['client_id']).replace(/\$\{env:([^}]+)\}/g, (_, name: string) => env[name] ?? ''),
    );
    for (const id of clientIds)
      expect(id).toBe(account.metadata.annotations?.['azure.workload.identity/client-id']);
  });

  it('validates with the project loader, which reads the projected token at load time', async () => {
    const { validateConfigText } = await import('../../src/config/load.js');
    const sources = workloadIdentity.loaderSources();
    expect(validateConfigText(workloadIdentity.configText, sources)).toEqual([]);
    expect(sources.read).toEqual(expect.arrayContaining(assertionFiles));
  });
});

describe('Dockerfile', () => {
  const stageByAlias = new Map(stages.filter((s) => s.alias).map((s) => [s.alias!.toLowerCase(), s]));
  function baseImage(stage: DockerStage): string {
    const parent = stageByAlias.get(stage.from.toLowerCase());
    return parent && parent !== stage ? baseImage(parent) : stage.from;
  }

  it('builds the runtime stage on Node 24', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(baseImage(finalStage)).toMatch(
      /^(?:docker\.io\/)?(?:library\/)?node:24(?:[.-][^@]*)?(?:@sha256:[0-9a-f]+)?$|\/distroless\/nodejs24/,
    );
  });

  it('runs the final stage as a numeric non-root user', () => {
    const user = finalStage.instructions.filter((i) => i.keyword === 'USER').at(-1)?.value;
    // Numeric, so the kubelet can enforce runAsNonRoot even without an explicit runAsUser.
    expect(user).toMatch(/^\d+(?::\d+)?$/);
    expect(Number(user?.split(':')[0])).toBeGreaterThan(0);
  });

  it('starts the compiled CLI named in package.json, and shuts down on SIGTERM', () => {
    const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
      bin: Record<string, string>;
    };
    const workdir = finalStage.instructions.filter((i) => i.keyword === 'WORKDIR').at(-1)?.value ?? '/';
    expect(jsonForm(finalStage, 'ENTRYPOINT')).toEqual([
      'node',
      path.posix.join(workdir, pkg.bin['token-injector']!),
    ]);
    expect(dockerCmd[0]).toBe('run');
    expect(finalStage.instructions.find((i) => i.keyword === 'STOPSIGNAL')?.value).toBe('SIGTERM');
  });

  it('exposes the proxy and admin ports the config uses', () => {
    const exposed = finalStage.instructions
      .filter((i) => i.keyword === 'EXPOSE')
      .flatMap((i) => i.value.split(/\s+/))
      .map((p) => Number(p.replace(/\/tcp$/, '')));
    expect(exposed).toContain(parseListen(secretExample.config.listen).port);
    expect(exposed).toContain(parseListen(secretExample.config.admin?.listen).port);
  });

  it('ships only production dependencies', () => {
    const copies = finalStage.instructions.filter(
      (i) => i.keyword === 'COPY' && /node_modules/.test(i.value),
    );
    expect(copies.length).toBeGreaterThanOrEqual(1);
    for (const copy of copies) {
      const from = /--from=(\S+)/.exec(copy.value)?.[1];
      expect(from, copy.value).toBeDefined();
      const source = stageByAlias.get(from!.toLowerCase());
      const installs = source?.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.value) ?? [];
      expect(
        installs.some((run) => /--omit[= ]dev/.test(run)),
        copy.value,
      ).toBe(true);
    }
  });

  it('has a .dockerignore that keeps host builds out but not the inputs the Dockerfile copies', () => {
    const ignored = readFileSync(path.join(root, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', 'dist', '.git']));
    const copied = stages
      .flatMap((s) => s.instructions)
      .filter((i) => i.keyword === 'COPY' && !/--from=/.test(i.value))
      .flatMap((i) => i.value.split(/\s+/).slice(0, -1))
      .filter((p) => !p.startsWith('--'));
    expect(copied.length).toBeGreaterThan(0);
    for (const source of copied) {
      expect(ignored, source).not.toContain(source.replace(/\/$/, ''));
      // A missing COPY source only shows up as a failed `docker build`, which CI here cannot run.
      expect(existsSync(path.join(root, source)), `${source} exists`).toBe(true);
    }
  });
});
