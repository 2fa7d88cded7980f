/**
 * The cloud-init user data that turns a fresh spot VM into a spotpipe peer: Node 20, spotpipe from
 * a source tarball or a git repository (built with `npm ci`), a systemd unit that runs
 * `spotpipe peer` with the cloud's spot notice watcher on, its environment file, and the cluster
 * secret. Only text is produced here; `spotpipe launch` writes it to a file.
 *
 * On the VM:
 *   /opt/spotpipe                          the code
 *   /etc/spotpipe/peer.env                 SPOTPIPE_<FLAG> settings for the unit (mode 0600)
 *   /etc/spotpipe/swarm.key                the cluster secret (mode 0600, root only)
 *   /etc/systemd/system/spotpipe-peer.service
 *   /var/lib/spotpipe/identity.key         the peer's identity, created on its first start
 *
 * The unit runs under a systemd DynamicUser, so no account is created; the secret stays root-only
 * on disk and reaches the service through LoadCredential= (a private read-only copy, `%d`).
 */
import { shellQuote } from './cloud-commands.js'
import { UsageError } from './errors.js'

export type Cloud = 'aws' | 'gcp' | 'azure'
export const CLOUDS: readonly Cloud[] = ['aws', 'gcp', 'azure']

/** Where things go on the VM. */
export const VM_PATHS = {
  code: '/opt/spotpipe',
  env: '/etc/spotpipe/peer.env',
  swarmKey: '/etc/spotpipe/swarm.key',
  unit: '/etc/systemd/system/spotpipe-peer.service',
  state: '/var/lib/spotpipe'
} as const

export const UNIT_NAME = 'spotpipe-peer.service'

/** How the VM gets spotpipe's sources. */
export type InstallSource =
  | { kind: 'tarball', url: string }
  | { kind: 'git', url: string, ref?: string }

/**
 * Reads --install: an http(s) URL of a source tarball whose files sit under one top folder (what
 * `git archive --prefix=spotpipe/` makes), or `git+https://HOST/REPO.git[#REF]`.
 */
export function parseInstallSource (spec: string): InstallSource {
  if (spec.startsWith('git+')) {
    const [url, ref] = spec.slice(4).split('#', 2)
    checkUrl(url, spec)
    return ref != null && ref !== '' ? { kind: 'git', url, ref } : { kind: 'git', url }
  }
  checkUrl(spec, spec)
  if (!/\.(tar\.gz|tgz)(\?.*)?$/.test(spec)) {
    throw new UsageError(`--install "${spec}" must be a .tar.gz/.tgz URL of spotpipe's sources or git+https://HOST/REPO.git[#REF]`)
  }
  return { kind: 'tarball', url: spec }
}

function checkUrl (url: string, spec: string): void {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new UsageError(`--install "${spec}" is not a URL`)
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new UsageError(`--install "${spec}" must be an http(s) URL (got ${u.protocol})`)
}

export interface PeerVmInit {
  cloud: Cloud
  /** The coordinator's multiaddr, ending in /p2p/<peer id>. */
  coordinator: string
  cluster: string
  /** The libp2p TCP port the peer listens on, on every interface. */
  port: number
  /** The swarm key file's text; absent for an open cluster. */
  swarmKey?: string
  install: InstallSource
}

/** systemd waits this long after SIGTERM: room for the handover (at most 30 s) and the shutdown. */
export const STOP_TIMEOUT_SECONDS = 90

/** The environment file: one SPOTPIPE_<FLAG> line per `spotpipe peer` flag (cli/config-file.ts). */
export function peerEnvFile (init: PeerVmInit): string {
  return [
    '# spotpipe peer settings, read by systemd (EnvironmentFile=). Each SPOTPIPE_<FLAG> line sets',
    '# that flag of `spotpipe peer` (spotpipe peer --help lists them); add others the same way.',
    `SPOTPIPE_COORDINATOR=${envValue(init.coordinator)}`,
    `SPOTPIPE_CLUSTER=${envValue(init.cluster)}`,
    `SPOTPIPE_LISTEN=/ip4/0.0.0.0/tcp/${init.port}`,
    ''
  ].join('\n')
}

/** The arguments after `spotpipe` that the unit runs (systemd expands `%d`, the credentials folder). */
export function peerExecArgs (init: PeerVmInit): string[] {
  return [
    'peer',
    '--spot', init.cloud,
    ...(init.swarmKey != null ? ['--swarm-key', '%d/swarm.key'] : ['--open']),
    '--identity', `${VM_PATHS.state}/identity.key`, '--create-identity'
  ]
}

export function peerUnit (init: PeerVmInit): string {
  const lines = [
    '[Unit]',
    `Description=spotpipe peer of cluster ${init.cluster}`,
    'Wants=network-online.target',
    'After=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    '# no account to create: systemd picks a user, and keeps its state (the identity) in /var/lib/spotpipe',
    'DynamicUser=yes',
    'StateDirectory=spotpipe',
    `WorkingDirectory=${VM_PATHS.state}`,
    ...(init.swarmKey != null
      ? ['# the secret stays root-only on disk; the service reads a private copy at %d/swarm.key', `LoadCredential=swarm.key:${VM_PATHS.swarmKey}`]
      : []),
    `EnvironmentFile=${VM_PATHS.env}`,
    `ExecStart=/usr/bin/node ${VM_PATHS.code}/bin/spotpipe.js ${peerExecArgs(init).join(' ')}`,
    '# a crash, or a coordinator not reachable at start (exit 1), restarts the peer; after a spot',
    '# notice it hands its stage over and exits 0, and is not restarted on a VM about to go',
    'Restart=on-failure',
    'RestartSec=5',
    'KillSignal=SIGTERM',
    `TimeoutStopSec=${STOP_TIMEOUT_SECONDS}`,
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    ''
  ]
  return lines.join('\n')
}

/** The shell steps that fetch and build the sources into VM_PATHS.code. */
function installSteps (src: InstallSource): YamlValue[] {
  if (src.kind === 'git') {
    return [['git', 'clone', '--depth', '1', ...(src.ref != null ? ['--branch', src.ref] : []), src.url, VM_PATHS.code]]
  }
  return [`mkdir -p ${VM_PATHS.code} && curl -fsSL ${shellQuote(src.url)} | tar -xz -C ${VM_PATHS.code} --strip-components=1`]
}

/** The whole #cloud-config document. */
export function peerUserData (init: PeerVmInit): string {
  const files: YamlValue[] = []
  if (init.swarmKey != null) {
    files.push({ path: VM_PATHS.swarmKey, owner: 'root:root', permissions: '0600', content: init.swarmKey })
  }
  files.push({ path: VM_PATHS.env, owner: 'root:root', permissions: '0600', content: peerEnvFile(init) })
  files.push({ path: VM_PATHS.unit, owner: 'root:root', permissions: '0644', content: peerUnit(init) })
  const doc: Record<string, YamlValue> = {
    package_update: true,
    packages: ['ca-certificates', 'curl', ...(init.install.kind === 'git' ? ['git'] : [])],
    write_files: files,
    runcmd: [
      // Node 20 from NodeSource: the distributions' own packages are older than spotpipe needs
      'curl -fsSL https://deb.nodesource.com/setup_20.x | bash -',
      ['apt-get', 'install', '-y', 'nodejs'],
      ...installSteps(init.install),
      // npm ci installs the locked dependencies and compiles dist/ (the prepare script)
      `cd ${VM_PATHS.code} && npm ci`,
      ['systemctl', 'daemon-reload'],
      ['systemctl', 'enable', '--now', UNIT_NAME]
    ]
  }
  const header = [
    '#cloud-config',
    `# spotpipe peer on ${init.cloud} (written by spotpipe launch).`,
    ...(init.swarmKey != null
      ? ['# It holds the cluster secret: anyone who can read this VM\'s user data can join the cluster.']
      : ['# An open cluster: any host that can reach the peers may join it.'])
  ]
  return header.join('\n') + '\n' + toYaml(doc) + '\n'
}

/** A value in an environment file must stay on one line. */
function envValue (v: string): string {
  if (/[\n\r]/.test(v)) throw new UsageError(`value ${JSON.stringify(v)} must not contain a line break`)
  return v
}

// --------------------------------------------------------------------------- a YAML subset

export type YamlValue = string | number | boolean | YamlValue[] | { [key: string]: YamlValue }

/**
 * Block-style YAML for maps and lists of plain data. Strings are JSON-quoted (JSON strings are YAML
 * double-quoted scalars), multi-line ones written as literal blocks so files read as themselves;
 * a list nested in a list is written in flow style (a JSON array).
 */
export function toYaml (v: YamlValue, indent = 0): string {
  const pad = ' '.repeat(indent)
  if (Array.isArray(v)) {
    return v.map(item => {
      if (Array.isArray(item)) return `${pad}- ${JSON.stringify(item)}`
      if (isMap(item)) return `${pad}- ${toYaml(item, indent + 2).slice(indent + 2)}`
      return `${pad}- ${scalar(item, indent + 2)}`
    }).join('\n')
  }
  if (isMap(v)) {
    return Object.entries(v).map(([k, item]) => {
      if (Array.isArray(item) || isMap(item)) return `${pad}${k}:\n${toYaml(item, indent + 2)}`
      return `${pad}${k}: ${scalar(item, indent + 2)}`
    }).join('\n')
  }
  return pad + scalar(v, indent)
}

function isMap (v: YamlValue): v is { [key: string]: YamlValue } {
  return typeof v === 'object' && !Array.isArray(v)
}

function scalar (v: string | number | boolean, indent: number): string {
  if (typeof v !== 'string') return String(v)
  // a literal block keeps every character of every line; a line that starts with a blank would
  // need an indentation indicator, so such (rare) text stays quoted
  const lines = v.split('\n')
  if (lines.length < 2 || v.endsWith('\n\n') || lines.some(l => /^\s/.test(l))) return JSON.stringify(v)
  const chomp = v.endsWith('\n') ? '' : '-'
  const body = v.endsWith('\n') ? lines.slice(0, -1) : lines
  const pad = ' '.repeat(indent)
  return `|${chomp}\n` + body.map(l => (l === '' ? '' : pad + l)).join('\n')
}
