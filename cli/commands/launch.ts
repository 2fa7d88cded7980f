/**
 * `spotpipe launch`: writes the cloud-init user data that makes a spot VM a spotpipe peer, and
 * prints the cloud's own CLI command that requests N such VMs. It sends nothing anywhere: the
 * operator reads the file and runs the command.
 */
import { promises as fs } from 'node:fs'
import { join, resolve } from 'node:path'
import { createLog } from '../../common/index.js'
import { CLOUD_DEFAULTS, shellCommand, spotRequestCommand } from '../cloud-commands.js'
import { CLOUDS, parseInstallSource, peerUserData, type Cloud } from '../cloud-init.js'
import { CONFIG_FLAG, CONFIG_HELP, parseFlagsWithConfig } from '../config-file.js'
import { UsageError } from '../errors.js'
import { intFlag } from '../flags.js'
import { ACCESS_FLAGS, ACCESS_HELP, accessFromFlags } from '../node-flags.js'
import { coordinatorIdOf } from '../observer.js'

const log = createLog('launch')

/** The file written into --out. */
export const USER_DATA_FILE = 'user-data.yaml'

const HELP = `usage: spotpipe launch --cloud aws|gcp|azure --coordinator MULTIADDR (--swarm-key FILE | --open)
                       --install URL [flags]

Writes <out>/${USER_DATA_FILE}, the cloud-init user data of a spotpipe peer VM (Node 20, spotpipe
built from --install, a systemd unit running spotpipe peer with the cloud's spot notice watcher,
restarted on failure), and prints the command of the cloud's CLI that requests --count spot VMs
with it. Nothing is sent anywhere: run the printed command yourself. The --swarm-key file's text
goes into the user data (a root-only file on the VM; docs/spot-vms.md says who can read user data).

  --cloud NAME         aws | gcp | azure
  --count N            how many VMs (default 1)
  --coordinator ADDR   the coordinator's multiaddr as the VMs reach it, ending in /p2p/<peer id>
${ACCESS_HELP}  --install URL        where the VMs get spotpipe's sources: a .tar.gz URL of a source tree under
                       one folder (git archive --prefix=spotpipe/ -o spotpipe.tar.gz HEAD), or
                       git+https://HOST/REPO.git[#REF]; built on the VM with npm ci
  --cluster ID         the coordinator's --cluster (default "spotpipe")
  --port PORT          libp2p TCP port the peers listen on, on every interface (default 4001)
  --instance-type T    aws ${CLOUD_DEFAULTS.aws.instanceType}, gcp ${CLOUD_DEFAULTS.gcp.instanceType}, azure ${CLOUD_DEFAULTS.azure.instanceType} by default
  --image IMAGE        the OS image (Ubuntu 24.04 LTS by default): an AMI id or resolve:ssm:PARAMETER
                       (aws), PROJECT/FAMILY (gcp), a URN or alias (azure)
  --region R           aws: the region (required)
  --zone Z             gcp: the zone (required)
  --resource-group G   azure: the resource group (required)
  --location L         azure: the location (default: the resource group's)
  --subnet S           the subnet the VMs join (aws subnet id, gcp subnetwork, azure subnet)
  --name NAME          VM name or name prefix (default "spotpipe-peer")
  --out DIR            where the user data goes (default ./spotpipe-launch)
${CONFIG_HELP}`

/** Flags that only one cloud's command uses: given to another cloud, they are a mistake. */
const CLOUD_ONLY: Readonly<Record<string, Cloud>> = { region: 'aws', zone: 'gcp', 'resource-group': 'azure', location: 'azure' }

export async function launch (argv: string[]): Promise<void> {
  const { values, positionals } = await parseFlagsWithConfig(argv, {
    ...CONFIG_FLAG,
    ...ACCESS_FLAGS,
    cloud: { type: 'string' },
    count: { type: 'string' },
    coordinator: { type: 'string' },
    install: { type: 'string' },
    cluster: { type: 'string' },
    port: { type: 'string' },
    'instance-type': { type: 'string' },
    image: { type: 'string' },
    region: { type: 'string' },
    zone: { type: 'string' },
    'resource-group': { type: 'string' },
    location: { type: 'string' },
    subnet: { type: 'string' },
    name: { type: 'string' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h' }
  })
  if (values.help === true) { process.stdout.write(HELP); return }
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}" (launch takes only flags)`)
  const cloud = values.cloud as string | undefined
  if (cloud == null) throw new UsageError('--cloud is required: aws, gcp or azure')
  if (!(CLOUDS as readonly string[]).includes(cloud)) throw new UsageError(`--cloud must be aws, gcp or azure, got "${cloud}"`)
  for (const [flag, owner] of Object.entries(CLOUD_ONLY)) {
    if (values[flag] != null && owner !== cloud) throw new UsageError(`--${flag} is for ${owner}, not ${cloud}`)
  }
  const count = intFlag(values, 'count', 1)
  const port = intFlag(values, 'port', 4001)
  if (port > 65535) throw new UsageError(`--port must be at most 65535, got ${port}`)
  const coordinator = values.coordinator as string | undefined
  if (coordinator == null) throw new UsageError('--coordinator is required (the coordinator\'s multiaddr as the VMs reach it, ending in /p2p/<peer id>)')
  coordinatorIdOf(coordinator)
  if (/\/ip[46]\/(127\.|::1\/)|\/ip4\/0\.0\.0\.0\//.test(coordinator)) {
    throw new UsageError(`--coordinator ${coordinator} is not an address another machine can dial: give the coordinator's private IP`)
  }
  const installSpec = values.install as string | undefined
  if (installSpec == null) throw new UsageError('--install is required: a .tar.gz URL of spotpipe\'s sources or git+https://HOST/REPO.git[#REF] (spotpipe is not on the npm registry)')
  const install = parseInstallSource(installSpec)
  const access = await accessFromFlags(values)
  const swarmKey = access.open ? undefined : await fs.readFile(access.file, 'utf8')
  const name = (values.name as string | undefined) ?? 'spotpipe-peer'
  if (!/^[a-z]([-a-z0-9]{0,50}[a-z0-9])?$/.test(name)) throw new UsageError(`--name must be lower-case letters, digits and dashes, starting with a letter (at most 52), got "${name}"`)
  const cluster = (values.cluster as string | undefined) ?? 'spotpipe'

  const c = cloud as Cloud
  const out = resolve((values.out as string | undefined) ?? 'spotpipe-launch')
  const userDataFile = join(out, USER_DATA_FILE)
  // build everything first, so a bad flag never leaves a file behind
  const userData = peerUserData({ cloud: c, coordinator, cluster, port, swarmKey, install })
  const command = spotRequestCommand({
    cloud: c,
    count,
    instanceType: (values['instance-type'] as string | undefined) ?? CLOUD_DEFAULTS[c].instanceType,
    image: (values.image as string | undefined) ?? CLOUD_DEFAULTS[c].image,
    name,
    userDataFile,
    cluster,
    region: values.region as string | undefined,
    zone: values.zone as string | undefined,
    resourceGroup: values['resource-group'] as string | undefined,
    location: values.location as string | undefined,
    subnet: values.subnet as string | undefined
  })
  await fs.mkdir(out, { recursive: true })
  await fs.writeFile(userDataFile, userData, { mode: 0o600 })
  await fs.chmod(userDataFile, 0o600) // an existing file keeps its mode on write
  log.info(`wrote ${userDataFile} (mode 0600${swarmKey != null ? ': it holds the cluster secret' : ''}); request the VMs with:`)
  process.stdout.write(shellCommand(command) + '\n')
}
