/**
 * The command of each cloud's own CLI that asks for spot VMs running a given user data file:
 *
 *   AWS    aws ec2 run-instances --instance-market-options MarketType=spot,...
 *   GCP    gcloud compute instances create NAME... --provisioning-model=SPOT
 *   Azure  az vm create --priority Spot --eviction-policy Delete
 *
 * spotpipe only prints it: the operator runs it with their own credentials (and can add flags such
 * as security groups or SSH keys first).
 */
import type { Cloud } from './cloud-init.js'
import { UsageError } from './errors.js'

export interface SpotRequest {
  cloud: Cloud
  count: number
  /** AWS instance type, GCP machine type, Azure VM size. */
  instanceType: string
  /** AWS: an AMI id or resolve:ssm:PARAMETER; GCP: PROJECT/FAMILY; Azure: an image URN or alias. */
  image: string
  /** VM name (GCP: the prefix of NAME-1..NAME-N; AWS: the Name tag; Azure: the name, or prefix with a count). */
  name: string
  /** The user data file, as the cloud CLI should read it. */
  userDataFile: string
  /** AWS region. */
  region?: string
  /** GCP zone. */
  zone?: string
  /** Azure resource group and (optional) location. */
  resourceGroup?: string
  location?: string
  /** AWS subnet id, GCP subnetwork, Azure subnet (name or id). */
  subnet?: string
  /** Tagged on AWS instances so a fleet can be found again. */
  cluster: string
}

/** What each cloud defaults to: Ubuntu 24.04 LTS, whose images run cloud-init on every cloud, and 2 vCPUs. */
export const CLOUD_DEFAULTS: Readonly<Record<Cloud, { instanceType: string, image: string }>> = {
  aws: { instanceType: 'm7i.large', image: 'resolve:ssm:/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id' },
  gcp: { instanceType: 'e2-standard-2', image: 'ubuntu-os-cloud/ubuntu-2404-lts-amd64' },
  azure: { instanceType: 'Standard_D2s_v5', image: 'Canonical:ubuntu-24_04-lts:server:latest' }
}

/** The argv (program first) that requests the VMs. */
export function spotRequestCommand (r: SpotRequest): string[] {
  if (r.cloud === 'aws') return awsCommand(r)
  if (r.cloud === 'gcp') return gcpCommand(r)
  return azureCommand(r)
}

function awsCommand (r: SpotRequest): string[] {
  if (r.region == null) throw new UsageError('--region is required for aws (e.g. us-east-1)')
  return [
    'aws', 'ec2', 'run-instances',
    '--region', r.region,
    '--image-id', r.image,
    '--instance-type', r.instanceType,
    '--count', String(r.count),
    // one-time requests that end in termination: a reclaimed peer is replaced, not resumed
    '--instance-market-options', 'MarketType=spot,SpotOptions={SpotInstanceType=one-time,InstanceInterruptionBehavior=terminate}',
    // IMDSv2 only: the spot watcher asks for a session token anyway
    '--metadata-options', 'HttpTokens=required,HttpEndpoint=enabled',
    '--user-data', `file://${r.userDataFile}`,
    '--tag-specifications', `ResourceType=instance,Tags=[{Key=Name,Value=${r.name}},{Key=spotpipe-cluster,Value=${r.cluster}}]`,
    ...(r.subnet != null ? ['--subnet-id', r.subnet] : [])
  ]
}

function gcpCommand (r: SpotRequest): string[] {
  if (r.zone == null) throw new UsageError('--zone is required for gcp (e.g. us-central1-a)')
  const slash = r.image.indexOf('/')
  if (slash <= 0 || slash === r.image.length - 1) throw new UsageError(`--image for gcp is PROJECT/FAMILY (e.g. ${CLOUD_DEFAULTS.gcp.image}), got "${r.image}"`)
  const names = Array.from({ length: r.count }, (_, i) => `${r.name}-${i + 1}`)
  return [
    'gcloud', 'compute', 'instances', 'create', ...names,
    `--zone=${r.zone}`,
    `--machine-type=${r.instanceType}`,
    '--provisioning-model=SPOT',
    '--instance-termination-action=DELETE',
    `--image-project=${r.image.slice(0, slash)}`,
    `--image-family=${r.image.slice(slash + 1)}`,
    `--metadata-from-file=user-data=${r.userDataFile}`,
    ...(r.subnet != null ? [`--subnet=${r.subnet}`] : [])
  ]
}

function azureCommand (r: SpotRequest): string[] {
  if (r.resourceGroup == null) throw new UsageError('--resource-group is required for azure')
  return [
    'az', 'vm', 'create',
    '--resource-group', r.resourceGroup,
    '--name', r.name,
    '--image', r.image,
    '--size', r.instanceType,
    '--priority', 'Spot',
    '--eviction-policy', 'Delete',
    // -1: never evicted for price, only for capacity; pays at most the on-demand price
    '--max-price', '-1',
    '--custom-data', r.userDataFile,
    '--generate-ssh-keys',
    // az takes --count from 2 on; one VM is the default
    ...(r.count > 1 ? ['--count', String(r.count)] : []),
    ...(r.location != null ? ['--location', r.location] : []),
    ...(r.subnet != null ? ['--subnet', r.subnet] : [])
  ]
}

/** One word for a POSIX shell: as is when it holds only safe characters, else single-quoted. */
export function shellQuote (word: string): string {
  if (word !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word
  return `'${word.replace(/'/g, "'\\''")}'`
}

/** The argv as a shell command, one flag per line (backslash continuations) so it reads easily. */
export function shellCommand (argv: readonly string[]): string {
  const parts: string[] = []
  for (const word of argv) {
    const q = shellQuote(word)
    if (word.startsWith('--') && parts.length > 0) parts.push(' \\\n  ' + q)
    else parts.push((parts.length > 0 ? ' ' : '') + q)
  }
  return parts.join('')
}
