/**
 * `spotpipe launch` as a real process: every user data it writes passes Debian's
 * `cloud-init schema`, holds the secret and the unit it should, and the printed command of each
 * cloud's CLI, read back through bash, carries exactly the recorded flags. Bad input is one line.
 * Nothing here talks to a cloud: the cloud CLIs are shell functions that print their arguments.
 */
import { execFile } from 'node:child_process'
import { promises as fs } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { generateSwarmKey, saveSwarmKey } from '../net/index.js'
import { killAll, spotpipe, type Proc } from './helpers/procs.js'

const run = promisify(execFile)

/** A coordinator address another machine could dial (nothing dials it here). */
const COORD = '/ip4/10.0.0.5/tcp/4001/p2p/12D3KooWBDpAn6bwDqEBQc6nSYkFmqFSBqpW2p37X4mpwAGpJkRD'
const TARBALL = 'https://files.example.com/spotpipe.tar.gz'

type Cloud = 'aws' | 'gcp' | 'azure'
const WHERE: Record<Cloud, string[]> = {
  aws: ['--region', 'eu-west-1'],
  gcp: ['--zone', 'europe-west4-a'],
  azure: ['--resource-group', 'spot-rg', '--location', 'westeurope']
}

/**
 * The flags each cloud's command must carry (and the only ones it may), as those CLIs spell them,
 * with what their values must say where it matters. `file` stands for the user data file's path.
 */
const RECORDED: Record<Cloud, { program: string[], required: Record<string, RegExp | string>, optional: string[] }> = {
  aws: {
    program: ['aws', 'ec2', 'run-instances'],
    required: {
      '--region': 'eu-west-1',
      '--image-id': /^(ami-[0-9a-f]+|resolve:ssm:\/.+)$/,
      '--instance-type': /^[a-z0-9]+\.[a-z0-9]+$/,
      '--count': '3',
      '--instance-market-options': /^MarketType=spot,SpotOptions=\{SpotInstanceType=one-time,InstanceInterruptionBehavior=terminate\}$/,
      '--metadata-options': /HttpTokens=required/,
      '--user-data': 'file://file',
      '--tag-specifications': /^ResourceType=instance,Tags=\[\{Key=Name,Value=spotpipe-peer\}/
    },
    optional: ['--subnet-id']
  },
  gcp: {
    program: ['gcloud', 'compute', 'instances', 'create', 'spotpipe-peer-1', 'spotpipe-peer-2', 'spotpipe-peer-3'],
    required: {
      '--zone': 'europe-west4-a',
      '--machine-type': /^[a-z0-9-]+$/,
      '--provisioning-model': 'SPOT',
      '--instance-termination-action': 'DELETE',
      '--image-project': 'ubuntu-os-cloud',
      '--image-family': /^ubuntu-/,
      '--metadata-from-file': 'user-data=file'
    },
    optional: ['--subnet']
  },
  azure: {
    program: ['az', 'vm', 'create'],
    required: {
      '--resource-group': 'spot-rg',
      '--name': 'spotpipe-peer',
      '--image': /^Canonical:/,
      '--size': /^Standard_/,
      '--priority': 'Spot',
      '--eviction-policy': 'Delete',
      '--max-price': '-1',
      '--custom-data': 'file',
      '--generate-ssh-keys': '',
      '--count': '3',
      '--location': 'westeurope'
    },
    optional: ['--subnet']
  }
}

let dir = ''
let keyFile = ''
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'spotpipe-launch-'))
  keyFile = join(dir, 'swarm.key')
  await saveSwarmKey(keyFile, generateSwarmKey())
})
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })
afterEach(async () => { await killAll() })

async function finished (p: Proc): Promise<{ code: number | null, stdout: string, stderr: string[] }> {
  const { code } = await p.exited
  return { code, stdout: p.lines.join('\n'), stderr: p.stderr }
}

async function launch (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string[] }> {
  return await finished(spotpipe(['launch', ...args], { DEBUG: '' }))
}

/** The words bash hands the cloud CLI when it runs `command` (the CLIs are stubs that print them). */
async function argvOf (command: string): Promise<string[]> {
  const stubs = ['aws', 'gcloud', 'az'].map(p => `${p} () { printf '%s\\0' ${p} "$@"; }`).join('; ')
  const { stdout } = await run('bash', ['-c', `${stubs}; eval "$SPOTPIPE_CMD"`], { env: { ...process.env, SPOTPIPE_CMD: command } })
  return stdout.split('\0').slice(0, -1)
}

/** The YAML as data, read by the same PyYAML cloud-init uses (python3-yaml comes with it). */
async function parseYaml (file: string): Promise<Record<string, any>> {
  const { stdout } = await run('python3', ['-c', 'import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))', file])
  return JSON.parse(stdout)
}

async function cloudInitSchema (file: string): Promise<string> {
  try {
    const { stdout, stderr } = await run('cloud-init', ['schema', '--config-file', file])
    return stdout + stderr
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stdout?: string, stderr?: string }
    if (e.code === 'ENOENT') throw new Error('cloud-init is not installed: apt-get install -y cloud-init (.ci/run does)')
    throw new Error(`cloud-init schema rejected ${file}: ${e.stdout ?? ''}${e.stderr ?? ''}`)
  }
}

function fileOf (doc: Record<string, any>, path: string): { content: string, permissions: string, owner: string } {
  const f = (doc.write_files as Array<{ path: string, content: string, permissions: string, owner: string }>).find(w => w.path === path)
  if (f == null) throw new Error(`no write_files entry for ${path}`)
  return f
}

describe('spotpipe launch', () => {
  for (const cloud of ['aws', 'gcp', 'azure'] as const) {
    it(`${cloud}: valid cloud-config with the secret, the unit and the watcher; the spot request carries the recorded flags`, async () => {
      const out = join(dir, cloud)
      const r = await launch(['--cloud', cloud, '--count', '3', '--coordinator', COORD, '--swarm-key', keyFile, '--install', TARBALL, '--cluster', 'run-7', '--out', out, ...WHERE[cloud]])
      expect(r.code, r.stderr.join('\n')).toBe(0)
      const file = join(out, 'user-data.yaml')
      expect((await fs.stat(file)).mode & 0o777).toBe(0o600)
      expect(await cloudInitSchema(file)).toMatch(/Valid cloud-config/)

      const text = await fs.readFile(file, 'utf8')
      expect(text.startsWith('#cloud-config\n')).toBe(true)
      expect(Buffer.byteLength(text)).toBeLessThan(16 * 1024) // AWS takes at most 16 KB of user data
      const doc = await parseYaml(file)
      const key = fileOf(doc, '/etc/spotpipe/swarm.key')
      expect(key).toMatchObject({ permissions: '0600', owner: 'root:root', content: await fs.readFile(keyFile, 'utf8') })
      const env = fileOf(doc, '/etc/spotpipe/peer.env')
      expect(env.permissions).toBe('0600')
      expect(env.content).toContain(`SPOTPIPE_COORDINATOR=${COORD}\n`)
      expect(env.content).toContain('SPOTPIPE_CLUSTER=run-7\n')
      expect(env.content).toContain('SPOTPIPE_LISTEN=/ip4/0.0.0.0/tcp/4001\n')
      const unit = fileOf(doc, '/etc/systemd/system/spotpipe-peer.service').content
      expect(unit).toMatch(/^Restart=on-failure$/m)
      expect(unit).toMatch(/^RestartSec=\d+$/m)
      expect(unit).toMatch(/^EnvironmentFile=\/etc\/spotpipe\/peer\.env$/m)
      expect(unit).toMatch(/^LoadCredential=swarm\.key:\/etc\/spotpipe\/swarm\.key$/m)
      expect(unit).toMatch(new RegExp(`^ExecStart=/usr/bin/node /opt/spotpipe/bin/spotpipe\\.js peer --spot ${cloud} --swarm-key %d/swarm\\.key `, 'm'))
      expect(doc.runcmd).toContainEqual(expect.stringContaining(`curl -fsSL ${TARBALL} | tar -xz -C /opt/spotpipe`))
      expect(doc.runcmd.at(-1)).toEqual(['systemctl', 'enable', '--now', 'spotpipe-peer.service'])

      const argv = await argvOf(r.stdout)
      const rec = RECORDED[cloud]
      expect(argv.slice(0, rec.program.length)).toEqual(rec.program)
      const flags = new Map<string, string>()
      const rest = argv.slice(rec.program.length)
      for (let i = 0; i < rest.length; i++) {
        const [flag, inline] = rest[i].split(/=(.*)/s, 2)
        expect(flag, `${rest[i]} in ${argv.join(' ')}`).toMatch(/^--[a-z-]+$/)
        const takesValue = inline == null && i + 1 < rest.length && !rest[i + 1].startsWith('--')
        flags.set(flag, inline ?? (takesValue ? rest[++i] : ''))
      }
      expect([...flags.keys()].filter(f => !(f in rec.required) && !rec.optional.includes(f))).toEqual([])
      for (const [flag, want] of Object.entries(rec.required)) {
        expect(flags.has(flag), `${cloud} command lacks ${flag}`).toBe(true)
        const got = (flags.get(flag) ?? '').replace(file, 'file')
        if (typeof want === 'string') expect(got, flag).toBe(want)
        else expect(got, flag).toMatch(want)
      }
    }, 60_000)
  }

  it('an open cluster from git: no secret in the user data, --open in the unit, still valid', async () => {
    const out = join(dir, 'open')
    const r = await launch(['--cloud', 'gcp', '--coordinator', COORD, '--open', '--install', 'git+https://git.example.com/you/spotpipe.git#v0.1.0', '--zone', 'us-central1-a', '--subnet', 'peers', '--out', out])
    expect(r.code, r.stderr.join('\n')).toBe(0)
    const file = join(out, 'user-data.yaml')
    expect(await cloudInitSchema(file)).toMatch(/Valid cloud-config/)
    const doc = await parseYaml(file)
    expect(doc.write_files.map((f: { path: string }) => f.path)).not.toContain('/etc/spotpipe/swarm.key')
    expect(fileOf(doc, '/etc/systemd/system/spotpipe-peer.service').content).toMatch(/^ExecStart=.* peer --spot gcp --open /m)
    expect(doc.packages).toContain('git')
    expect(doc.runcmd).toContainEqual(['git', 'clone', '--depth', '1', '--branch', 'v0.1.0', 'https://git.example.com/you/spotpipe.git', '/opt/spotpipe'])
    expect(await argvOf(r.stdout)).toEqual(expect.arrayContaining(['spotpipe-peer-1', '--subnet=peers']))
  }, 60_000)

  it('the unit\'s command line and environment file start a peer (here it finds no coordinator)', async () => {
    const out = join(dir, 'unit')
    const r = await launch(['--cloud', 'aws', '--coordinator', COORD, '--swarm-key', keyFile, '--install', TARBALL, '--region', 'us-east-1', '--out', out])
    expect(r.code, r.stderr.join('\n')).toBe(0)
    const doc = await parseYaml(join(out, 'user-data.yaml'))
    const unit = fileOf(doc, '/etc/systemd/system/spotpipe-peer.service').content
    const exec = /^ExecStart=\/usr\/bin\/node \/opt\/spotpipe\/bin\/spotpipe\.js (.*)$/m.exec(unit)?.[1]
    expect(exec).toBeDefined()
    // as systemd would run it, with the VM's paths moved here and every address on loopback
    const args = (exec ?? '').split(' ').map(a => a.replace('%d/', `${dir}/`).replace('/var/lib/spotpipe/', `${out}/`))
    const env: Record<string, string> = {}
    for (const line of fileOf(doc, '/etc/spotpipe/peer.env').content.split('\n')) {
      const m = /^(SPOTPIPE_[A-Z_]+)=(.*)$/.exec(line)
      if (m != null) env[m[1]] = m[2]
    }
    expect(Object.keys(env).sort()).toEqual(['SPOTPIPE_CLUSTER', 'SPOTPIPE_COORDINATOR', 'SPOTPIPE_LISTEN'])
    env.SPOTPIPE_COORDINATOR = COORD.replace('/ip4/10.0.0.5/tcp/4001', '/ip4/127.0.0.1/tcp/1')
    env.SPOTPIPE_LISTEN = '/ip4/127.0.0.1/tcp/0'
    const p = spotpipe([...args, '--join-timeout', '0', '--metadata-url', 'http://127.0.0.1:1'], { ...env, DEBUG: '' })
    const done = await finished(p)
    // exit 1 with the coordinator unreachable, not 2: every flag and variable was accepted
    expect(done.code, done.stderr.join('\n')).toBe(1)
    expect(done.stderr.join('\n')).toMatch(/cannot reach the coordinator at \/ip4\/127\.0\.0\.1\/tcp\/1\/.*\[ERR_UNREACHABLE\]/)
    expect((await fs.stat(join(out, 'identity.key'))).mode & 0o777).toBe(0o600)
  }, 60_000)

  it('bad input: one line naming the problem, a non-zero exit, no file written', async () => {
    const base = ['--coordinator', COORD, '--swarm-key', keyFile, '--install', TARBALL, '--region', 'us-east-1']
    const out = join(dir, 'bad')
    const cases: Array<[string[], RegExp, number]> = [
      [['--cloud', 'oracle', ...base], /--cloud must be aws, gcp or azure, got "oracle" \[ERR_USAGE\]/, 2],
      [[...base], /--cloud is required/, 2],
      [['--cloud', 'aws', '--count', '0', ...base], /--count must be an integer >= 1, got "0" \[ERR_USAGE\]/, 2],
      [['--cloud', 'aws', ...base.slice(2)], /--coordinator is required/, 2],
      [['--cloud', 'aws', ...base.slice(0, 4), ...base.slice(6)], /--install is required/, 2],
      [['--cloud', 'aws', ...base.slice(0, 4), '--install', 'ftp://x/y.tar.gz', ...base.slice(6)], /--install "ftp:\/\/x\/y\.tar\.gz" must be an http\(s\) URL/, 2],
      [['--cloud', 'aws', '--coordinator', '/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWBDpAn6bwDqEBQc6nSYkFmqFSBqpW2p37X4mpwAGpJkRD', ...base.slice(2)], /not an address another machine can dial/, 2],
      [['--cloud', 'aws', '--coordinator', '/ip4/10.0.0.5/tcp/4001', ...base.slice(2)], /must end in \/p2p\//, 2],
      [['--cloud', 'aws', ...base.slice(0, 2), '--swarm-key', join(dir, 'missing.key'), ...base.slice(4)], /swarm key .*missing\.key.*\[ERR_SWARM_KEY\]/, 1],
      [['--cloud', 'aws', ...base.slice(0, 2), ...base.slice(4)], /private by default: give --swarm-key FILE/, 2],
      [['--cloud', 'gcp', ...base], /--region is for aws, not gcp/, 2],
      [['--cloud', 'gcp', ...base.slice(0, 6)], /--zone is required for gcp/, 2],
      [['--cloud', 'azure', ...base.slice(0, 6)], /--resource-group is required for azure/, 2]
    ]
    const check = async ([args, pattern, code]: [string[], RegExp, number]): Promise<void> => {
      const r = await launch([...args, '--out', out])
      expect(r.code, `${args.join(' ')}: ${r.stderr.join(' | ')}`).toBe(code)
      const lines = r.stderr.filter(l => !l.startsWith('['))
      expect(lines, args.join(' ')).toHaveLength(1)
      expect(lines[0]).toMatch(/^spotpipe: /)
      expect(lines[0]).toMatch(pattern)
      expect(r.stdout).toBe('')
    }
    // four processes at a time: enough to be quick on two cores without starving them
    for (let i = 0; i < cases.length; i += 4) await Promise.all(cases.slice(i, i + 4).map(check))
    await expect(fs.stat(out)).rejects.toThrow(/ENOENT/)
  }, 120_000)
})
