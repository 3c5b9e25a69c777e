import { parseArgs } from 'node:util';
import yaml from 'js-yaml';
import { PoolRegistry } from '../db/index.ts';
import { readAndRender, statusClusterName, targetKey, type RenderCluster } from '../sync/index.ts';
import { SecretScrubber, createLogger } from '../telemetry/index.ts';
import { CliError, EXIT, compileDqrTemplate, outputFormat, printStructured, hubFromKubeconfig, parseClusterFlag, readDqrFile, selectedFlagClusters, selectedOnHub, settingsFromUrl } from './common.ts';

export const renderHelp = `usage: rowcast render -f FILE --database-url URL [flags]

Runs the query of a DatabaseQueryResource and prints the manifests each row
renders to, per cluster. Nothing is applied.

flags:
  -f, --file FILE              the DatabaseQueryResource (YAML)
  --database-url URL           postgres://user:password@host:port/db?sslmode=disable
  --cluster NAME[:k=v,...]     a cluster to render for, with its labels (repeatable); it must be
                               one the DQR's spec.targets select
  --kubeconfig PATH            read the ClusterTargets the DQR selects from this hub (with --cluster:
                               only those named)
  --context NAME               the hub's context in that kubeconfig
  -n, --namespace NS           the DQR's namespace (default: the file's, else default)
  -o, --output FORMAT          text (default: a YAML stream, each object headed by its cluster and row),
                               json or yaml: {dqr, rows, clusters: [{name, labels, objects: [{row, manifest}]}], failures}
  -h, --help                   this text

exit codes: 0 every row rendered, 1 some rows failed or the hub refused, 2 bad usage or input`;

export async function renderCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      file: { type: 'string', short: 'f' },
      'database-url': { type: 'string' },
      cluster: { type: 'string', multiple: true },
      kubeconfig: { type: 'string' },
      context: { type: 'string' },
      namespace: { type: 'string', short: 'n' },
      output: { type: 'string', short: 'o' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    process.stdout.write(`${renderHelp}\n`);
    return EXIT.ok;
  }
  if (values.file === undefined || values['database-url'] === undefined) throw new CliError(`-f and --database-url are required\n\n${renderHelp}`, EXIT.usage);
  const { dqr } = await readDqrFile(values.file, values.namespace);
  const namespace = dqr.metadata.namespace ?? 'default';
  const template = compileDqrTemplate(dqr);
  const output = outputFormat(values.output);
  const settings = settingsFromUrl(values['database-url'], dqr.spec.database.pool);
  const flags = (values.cluster ?? []).map(parseClusterFlag);
  let targets;
  if (values.kubeconfig !== undefined || values.context !== undefined) {
    const hub = hubFromKubeconfig(values.kubeconfig, values.context);
    try {
      const selection = await selectedOnHub(hub, dqr);
      for (const refusal of selection.refused) process.stderr.write(`note: ${refusal.message}\n`);
      targets = selection.selected;
    } finally {
      await hub.close();
    }
    const names = targets.map((t) => t.metadata.name);
    for (const flag of flags) {
      if (!names.includes(flag.name)) throw new CliError(`--cluster ${flag.name}: the DQR does not select a ClusterTarget of this name on the hub; it selects: ${names.join(', ')}`, EXIT.usage);
    }
    if (flags.length > 0) targets = targets.filter((t) => flags.some((f) => f.name === t.metadata.name));
  } else if (flags.length > 0) {
    targets = selectedFlagClusters(dqr, flags);
  } else {
    throw new CliError('name the clusters to render for: --cluster NAME[:key=value,...] (repeatable), or --kubeconfig to read the ClusterTargets the DQR selects', EXIT.usage);
  }
  const clusters: RenderCluster[] = targets.map((t) => ({ key: targetKey(t), name: t.metadata.name, labels: t.metadata.labels }));
  const scrubber = new SecretScrubber();
  scrubber.register(settings.password, 'command-line');
  const pools = new PoolRegistry({ logger: createLogger({ level: 'error', scrubber, write: (line) => process.stderr.write(`${line}\n`) }) });
  const lease = pools.acquire(settings);
  try {
    const rendered = await readAndRender({
      dqr,
      pool: lease.pool,
      template,
      owner: { hubId: 'hub', namespace, name: dqr.metadata.name, uid: dqr.metadata.uid ?? '' },
      clusters,
      signal: AbortSignal.timeout(10 * 60_000),
    });
    let objects = 0;
    const perCluster = clusters.map((cluster) => {
      const rows = [...(rendered.desired.get(cluster.key) ?? [])].sort((a, b) => a.rowKey.localeCompare(b.rowKey, 'en', { numeric: true }));
      objects += rows.length;
      return { name: statusClusterName(namespace, cluster.key), labels: cluster.labels, objects: rows.map((o) => ({ row: o.rowKey, manifest: o.body })) };
    });
    if (output === 'text') {
      for (const cluster of perCluster) {
        for (const object of cluster.objects) process.stdout.write(`---\n# cluster: ${cluster.name}, row: ${object.row}\n${yaml.dump(object.manifest, { lineWidth: -1, noRefs: true })}`);
      }
    } else {
      const failures = rendered.failures.map((f) => ({ row: f.rowKey, cluster: f.cluster === '' ? '' : statusClusterName(namespace, f.cluster), field: f.field, message: scrubber.scrub(f.message) }));
      printStructured({ dqr: `${namespace}/${dqr.metadata.name}`, rows: rendered.rowCount, clusters: perCluster, failures }, output);
    }
    for (const f of rendered.failures) {
      process.stderr.write(`row ${JSON.stringify(f.rowKey)}${f.cluster === '' ? '' : ` on cluster ${statusClusterName(namespace, f.cluster)}`}: ${f.field === '' ? '' : `${f.field}: `}${scrubber.scrub(f.message)}\n`);
    }
    const failing = new Set(rendered.failures.map((f) => f.rowKey)).size;
    process.stderr.write(`${rendered.rowCount} rows, ${objects} objects for ${clusters.length} cluster(s), ${failing} failing row(s)\n`);
    return failing > 0 ? EXIT.failed : EXIT.ok;
  } catch (error) {
    throw new CliError(`query failed: ${scrubber.scrub(error instanceof Error ? error.message : String(error))}`);
  } finally {
    await lease.release();
    await pools.closeAll();
  }
}
