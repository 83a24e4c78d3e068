// The launcher flags (--nproc-per-node, --nnodes, --node-rank, --master-addr, --master-port):
// written into the config's dist section, and turned into torchrun settings when more than one
// process runs.
import { LoomError, EXIT_USAGE } from '../util/errors.js';
import type { RunConfig } from '../config/schema.js';
import type { LauncherOptions } from '../protocol/command.js';

/** The launcher flags as given (absent ones keep the config's values). */
export interface DistFlags {
  nprocPerNode?: number;
  nnodes?: number;
  /** This node's rank, 0 .. nnodes-1. */
  nodeRank: number;
  masterAddr?: string;
  masterPort?: number;
}

/** The config with the flags applied, and torchrun settings unless it runs as one process. */
export function applyDistFlags(config: RunConfig, flags: DistFlags): { config: RunConfig; launcher?: LauncherOptions } {
  const nproc = flags.nprocPerNode ?? config.dist.nproc_per_node;
  const nnodes = flags.nnodes ?? config.dist.nnodes;
  const { nodeRank, masterPort } = flags;
  if (nodeRank >= nnodes) throw new LoomError(`--node-rank must be below --nnodes (${nnodes}), got ${nodeRank}`, EXIT_USAGE);
  const masterAddr = flags.masterAddr ?? (nnodes > 1 && !isLoopback(config.dist.master_addr) ? config.dist.master_addr : undefined);
  if (nnodes > 1 && masterAddr === undefined) {
    throw new LoomError(
      `training on ${nnodes} nodes needs --master-addr, the host name of node 0 (dist.master_addr is ${config.dist.master_addr}, which other nodes cannot reach)`,
      EXIT_USAGE,
    );
  }
  const dist: RunConfig['dist'] = {
    ...config.dist,
    nproc_per_node: nproc,
    nnodes,
    ...(masterAddr !== undefined ? { master_addr: masterAddr } : {}),
    ...(masterPort !== undefined ? { master_port: masterPort } : {}),
  };
  const next = { ...config, dist };
  if (nproc * nnodes === 1) return { config: next };
  // One node without an address uses torchrun's standalone rendezvous (a free local port).
  const launcher: LauncherOptions =
    nnodes === 1 && masterAddr === undefined
      ? { nprocPerNode: nproc, ...(masterPort !== undefined ? { masterPort } : {}) }
      : { nprocPerNode: nproc, nnodes, nodeRank, masterAddr: dist.master_addr, masterPort: dist.master_port };
  return { config: next, launcher };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}
