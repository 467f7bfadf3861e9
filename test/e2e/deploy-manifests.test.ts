// The Dockerfile, the Kubernetes manifests and the config they carry are only ever checked when
// someone deploys them; these tests make them agree with each other (ports, paths, secret keys)
// and with the config loader, so a rename in one place cannot silently break the example.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parseDocument } from 'yaml';

const root = fileURLToPath(new URL('../../', import.meta.url));
const manifestDir = path.join(root, 'deploy', 'kubernetes');

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
  ports?: { name?: string; containerPort: number }[];
  env?: { name: string; value?: string }[];
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
interface Volume {
  name: string;
  configMap?: { name: string; items?: KeyToPath[] };
  secret?: { secretName: string; items?: KeyToPath[] };
}
interface PodSpec {
  initContainers?: Container[];
  containers: Container[];
  volumes?: Volume[];
  securityContext?: SecurityContext;
}
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  spec?: PodSpec & { template?: { spec: PodSpec } };
}

function loadManifests(): { file: string; manifest: Manifest }[] {
  const out: { file: string; manifest: Manifest }[] = [];
  for (const file of readdirSync(manifestDir).filter((f) => /\.ya?ml$/.test(f))) {
    for (const doc of parseAllDocuments(readFileSync(path.join(manifestDir, file), 'utf8'))) {
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

const manifests = loadManifests();
const ofKind = (kind: string) => manifests.filter((m) => m.manifest.kind === kind).map((m) => m.manifest);

const workload = only(
  manifests.filter((m) => m.manifest.kind === 'Pod' || m.manifest.spec?.template?.spec !== undefined),
  'Pod or workload with a pod template',
).manifest;
const podSpec = (workload.kind === 'Pod' ? workload.spec : workload.spec?.template?.spec) as PodSpec;
const initContainers = podSpec.initContainers ?? [];
const sidecar = only(
  [...initContainers, ...podSpec.containers].filter(
    (c) => c.name === 'token-injector' || /token-injector/.test(c.image ?? ''),
  ),
  'token-injector container',
);
const appContainers = podSpec.containers.filter((c) => c !== sidecar);
const volumes = new Map((podSpec.volumes ?? []).map((v) => [v.name, v]));
const secrets = ofKind('Secret');
const configMaps = ofKind('ConfigMap');

const dockerfileText = readFileSync(path.join(root, 'Dockerfile'), 'utf8');
const stages = parseDockerfile(dockerfileText);
const finalStage = stages.at(-1)!;
const dockerCmd = jsonForm(finalStage, 'CMD');

const sidecarArgs = sidecar.args ?? dockerCmd;
const configPath = configArgument(sidecarArgs);

/** Where the sidecar sees each ConfigMap key, and which ConfigMap it comes from. */
const configFiles = new Map<string, { configMap: Manifest; key: string }>();
for (const mount of sidecar.volumeMounts ?? []) {
  const source = volumes.get(mount.name)?.configMap;
  if (!source) continue;
  const configMap = configMaps.find((c) => c.metadata.name === source.name);
  if (!configMap) continue;
  for (const [file, key] of projectedFiles(mount, Object.keys(configMap.data ?? {}), source.items)) {
    configFiles.set(file, { configMap, key });
  }
}
const configSource = configPath === undefined ? undefined : configFiles.get(configPath);
const configText = configSource?.configMap.data?.[configSource.key] ?? '';
const configDoc = parseDocument(configText);
const config = (configDoc.toJS() ?? {}) as {
  listen?: string;
  admin?: { listen?: string };
};

/** Resolves a `${file:...}` path to the Secret key that backs it, through the sidecar's mounts. */
function secretBacking(
  file: string,
): { mount: VolumeMount; secret: Manifest | undefined; key: string } | undefined {
  for (const mount of sidecar.volumeMounts ?? []) {
    const source = volumes.get(mount.name)?.secret;
    if (!source) continue;
    const secret = secrets.find((s) => s.metadata.name === source.secretName);
    const keys = [...Object.keys(secret?.stringData ?? {}), ...Object.keys(secret?.data ?? {})];
    const key = projectedFiles(mount, keys, source.items).get(file);
    if (key !== undefined) return { mount, secret, key };
    // A path under the mount whose key is missing is reported by the caller, not skipped.
    if (mount.subPath === undefined && file.startsWith(`${mount.mountPath.replace(/\/$/, '')}/`)) {
      return { mount, secret, key: path.posix.relative(mount.mountPath, file) };
    }
  }
  return undefined;
}

// Same grammar as the loader's interpolation: `$${` is an escaped literal, not a reference.
const references = [...configText.matchAll(/\$\$\{|\$\{([a-z]+):([^}]*)\}/g)].filter(
  (m) => m[1] !== undefined,
);
const fileReferences = references.filter((m) => m[1] === 'file').map((m) => m[2]!);
const envReferences = references.filter((m) => m[1] === 'env').map((m) => m[2]!);

function resolvePort(container: Container, port: number | string | undefined): number | undefined {
  if (typeof port === 'number') return port;
  if (typeof port === 'string' && /^\d+$/.test(port)) return Number(port);
  return container.ports?.find((p) => p.name === port)?.containerPort;
}

describe('deploy/kubernetes manifests', () => {
  it('has one ConfigMap, one Secret and the workload, all with a kind and a name', () => {
    expect(configMaps.length).toBeGreaterThanOrEqual(1);
    expect(secrets.length).toBeGreaterThanOrEqual(1);
    for (const { file, manifest } of manifests) {
      expect(manifest.apiVersion, file).toEqual(expect.any(String));
      expect(manifest.metadata?.name, file).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    }
  });

  it('runs token-injector as a native sidecar with the image entrypoint', () => {
    expect(initContainers).toContain(sidecar);
    expect(sidecar.restartPolicy).toBe('Always');
    // A `command` would replace the image's ENTRYPOINT and bypass `node /app/dist/cli/main.js`.
    expect(sidecar.command).toBeUndefined();
    expect(sidecarArgs[0]).toBe('run');
  });

  it('mounts the ConfigMap config exactly where --config points, and agrees with the image default', () => {
    expect(configPath).toBeDefined();
    expect([...configFiles.keys()]).toContain(configPath);
    expect(configArgument(dockerCmd)).toBe(configPath);
    const mount = sidecar.volumeMounts?.find((m) => volumes.get(m.name)?.configMap);
    expect(mount?.readOnly).toBe(true);
  });

  it('carries a config that parses as YAML', () => {
    expect(configDoc.errors.map((e) => e.message)).toEqual([]);
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
      for (const variable of noProxy) expect(variable.value).toMatch(/localhost|127\.0\.0\.1/);
    }
  });

  it('backs every file reference with a key of a Secret mounted read-only into the sidecar', () => {
    expect(fileReferences.length).toBeGreaterThanOrEqual(1);
    for (const file of fileReferences) {
      const backing = secretBacking(file);
      expect(backing, file).toBeDefined();
      expect(backing?.mount.readOnly, file).toBe(true);
      expect(backing?.secret, `Secret for ${file}`).toBeDefined();
      const keys = [
        ...Object.keys(backing?.secret?.stringData ?? {}),
        ...Object.keys(backing?.secret?.data ?? {}),
      ];
      expect(keys, file).toContain(backing?.key);
      expect(path.posix.basename(file)).toBe(path.posix.basename(backing?.key ?? ''));
    }
  });

  it('backs every env reference with an env var of the sidecar', () => {
    const names = (sidecar.env ?? []).map((e) => e.name);
    for (const name of envReferences) expect(names, name).toContain(name);
  });

  it('keeps the client secret out of the app containers', () => {
    const secretVolumes = [...volumes.values()].filter((v) => v.secret).map((v) => v.name);
    for (const app of appContainers) {
      for (const mount of app.volumeMounts ?? []) expect(secretVolumes).not.toContain(mount.name);
    }
  });

  it('runs every container as non-root, read-only, without privilege escalation or capabilities', () => {
    for (const container of [...initContainers, ...podSpec.containers]) {
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
    expect(exposed).toContain(parseListen(config.listen).port);
    expect(exposed).toContain(parseListen(config.admin?.listen).port);
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

describe('the ConfigMap config and the project config loader', () => {
  it('validates without problems when the mounted secrets are present', async () => {
    const { validateConfigText } = await import('../../src/config/load.js');
    const env = Object.fromEntries(
      (sidecar.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]),
    );
    const problems = validateConfigText(configText, {
      env,
      baseDir: path.posix.dirname(configPath ?? '/'),
      readFile: (file: string) => {
        const backing = secretBacking(file);
        const keys = [
          ...Object.keys(backing?.secret?.stringData ?? {}),
          ...Object.keys(backing?.secret?.data ?? {}),
        ];
        if (backing && keys.includes(backing.key)) return 'dummy-client-secret';
        throw Object.assign(new Error(`ENOENT: no such file or directory, open '${file}'`), {
          code: 'ENOENT',
        });
      },
    });
    expect(problems).toEqual([]);
  });
});
