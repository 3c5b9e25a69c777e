import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, mkdir, readFile, rename, rm, mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cacheDir, goModulesDir } from './paths.ts';

const run = promisify(execFile);

export interface ControlPlaneBinaries {
  kubeApiserver: string;
  kubectl: string;
  etcd: string;
  helm: string;
}

interface GoBuild {
  /** Folder under test/harness/go holding the wrapper module. */
  module: string;
  /** Packages to build; each becomes a binary named after its last path element. */
  packages: string[];
  ldflags: string;
}

/** The Kubernetes version the harness pins, as its /version reports it. */
export async function kubernetesVersion(): Promise<string> {
  const goMod = await readFile(join(goModulesDir, 'kube-apiserver', 'go.mod'), 'utf8');
  const match = /^\s*(?:require\s+)?k8s\.io\/kubernetes (v\d+\.\d+\.\d+)\b/m.exec(goMod);
  if (match?.[1] === undefined) throw new Error('test/harness/go/kube-apiserver/go.mod does not pin k8s.io/kubernetes');
  return match[1];
}

/** The version a wrapper module's go.mod pins for `modulePath` (a require line). */
async function pinnedVersion(module: string, modulePath: string): Promise<string> {
  const goMod = await readFile(join(goModulesDir, module, 'go.mod'), 'utf8');
  const escaped = modulePath.replaceAll('.', '\\.');
  const match = new RegExp(`^\\s*(?:require\\s+)?${escaped} (v\\d+\\.\\d+\\.\\d+)\\b`, 'm').exec(goMod);
  if (match?.[1] === undefined) throw new Error(`test/harness/go/${module}/go.mod does not pin ${modulePath}`);
  return match[1];
}

/** The helm version the harness pins, as `helm version` reports it. */
export async function helmVersion(): Promise<string> {
  return pinnedVersion('helm', 'helm.sh/helm/v3');
}

/**
 * helm's own Makefile stamps its version and the Kubernetes version its
 * client-go speaks (v0.Y → 1.Y), which `helm template` reports as
 * .Capabilities.KubeVersion and `helm lint` checks deprecations against.
 */
async function helmBuild(): Promise<GoBuild> {
  const version = await helmVersion();
  const clientGo = await pinnedVersion('helm', 'k8s.io/client-go');
  const [, kubeMinor] = clientGo.slice(1).split('.');
  const xflags = [
    `-X helm.sh/helm/v3/internal/version.version=${version}`,
    '-X helm.sh/helm/v3/internal/version.gitTreeState=clean',
    ...['pkg/chartutil', 'pkg/lint/rules'].flatMap((pkg) => [
      `-X helm.sh/helm/v3/${pkg}.k8sVersionMajor=1`,
      `-X helm.sh/helm/v3/${pkg}.k8sVersionMinor=${kubeMinor ?? ''}`,
    ]),
  ];
  return { module: 'helm', packages: ['helm.sh/helm/v3/cmd/helm'], ldflags: ['-s', '-w', ...xflags].join(' ') };
}

async function builds(): Promise<GoBuild[]> {
  const version = await kubernetesVersion();
  const [major, minor] = version.slice(1).split('.');
  const stamp = ['gitVersion', version, 'gitMajor', major, 'gitMinor', minor, 'gitTreeState', 'clean'];
  const xflags: string[] = [];
  for (let i = 0; i < stamp.length; i += 2) xflags.push(`-X k8s.io/component-base/version.${stamp[i] ?? ''}=${stamp[i + 1] ?? ''}`);
  return [
    {
      module: 'kube-apiserver',
      packages: ['k8s.io/kubernetes/cmd/kube-apiserver', 'k8s.io/kubernetes/cmd/kubectl'],
      ldflags: ['-s', '-w', ...xflags].join(' '),
    },
    { module: 'etcd', packages: ['.'], ldflags: '-s -w' },
    await helmBuild(),
  ];
}

/** The cache key changes whenever a pinned version (go.mod/go.sum) or the flags change. */
async function buildKey(build: GoBuild): Promise<string> {
  const hash = createHash('sha256');
  for (const file of ['go.mod', 'go.sum', 'main.go']) {
    const content = await readFile(join(goModulesDir, build.module, file)).catch(() => Buffer.alloc(0));
    hash.update(file).update(content);
  }
  hash.update(build.packages.join(',')).update(build.ldflags).update(`${process.platform}/${process.arch}`);
  return hash.digest('hex').slice(0, 16);
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

function binaryName(build: GoBuild, pkg: string): string {
  return pkg === '.' ? build.module : (pkg.split('/').at(-1) ?? pkg);
}

/**
 * Builds the pinned control plane once and reuses it. Each build goes to a temp
 * folder and is renamed into place, so an interrupted build leaves no half binary.
 */
export async function ensureControlPlaneBinaries(log: (line: string) => void = () => undefined): Promise<ControlPlaneBinaries> {
  const binDir = join(cacheDir(), 'bin');
  await mkdir(binDir, { recursive: true });
  const found = new Map<string, string>();
  for (const build of await builds()) {
    const target = join(binDir, `${build.module}-${await buildKey(build)}`);
    if (!(await exists(target))) {
      const started = performance.now();
      log(`building ${build.packages.join(', ')} from ${build.module}/go.mod (cold builds take minutes)`);
      const tmp = await mkdtemp(join(binDir, `.building-${build.module}-`));
      try {
        await run('go', ['build', '-trimpath', `-ldflags=${build.ldflags}`, '-o', tmp + '/', ...build.packages], {
          cwd: join(goModulesDir, build.module),
          env: { ...process.env, GOFLAGS: '-mod=readonly'},
          maxBuffer: 64 * 1024 * 1024,
        });
        await rename(tmp, target).catch(async (error: unknown) => {
          // Another process finished the same build first; theirs is as good as ours.
          if (!(await exists(target))) throw error;
        });
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
      log(`built ${build.module} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    }
    for (const pkg of build.packages) found.set(binaryName(build, pkg), join(target, binaryName(build, pkg)));
  }
  const pick = (name: string): string => {
    const path = found.get(name);
    if (path === undefined) throw new Error(`control-plane build did not produce ${name}`);
    return path;
  };
  return { kubeApiserver: pick('kube-apiserver'), kubectl: pick('kubectl'), etcd: pick('etcd'), helm: pick('helm') };
}
