/**
 * torchrun's environment contract: the variables `emotorch-run` (and torchrun) set for each rank,
 * read and checked here so that a bad or missing one is named.
 */
import { EmotorchError, show } from '../errors';

/** What a rank learns from its environment. */
export interface DistEnv {
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  masterAddr: string;
  masterPort: number;
}

/** The variables {@link readEnv} needs (torchrun sets these and more). */
export const REQUIRED_ENV = ['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'] as const;

function envError(name: string, what: string, value: string | undefined): never {
  const got = value === undefined ? 'it is not set' : `received ${show(value)}`;
  throw new EmotorchError(
    `Expected ${what} in environment variable ${name} but ${got} (launch with \`npx emotorch-run --nproc-per-node N script.mjs\` or torchrun, or pass it to init())`,
    'ERR_DIST_ENV',
  );
}

function intVar(env: NodeJS.ProcessEnv, name: string, min: number, max: number): number {
  const v = env[name];
  const n = v !== undefined && /^\s*\d+\s*$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) envError(name, max === Infinity ? `an integer ≥ ${min}` : `an integer from ${min} to ${max}`, v);
  return n;
}

/**
 * Reads RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT.
 * @param env default process.env
 * @throws EmotorchError ERR_DIST_ENV naming the first missing or malformed variable.
 * @example
 * const { rank, worldSize } = et.distributed.readEnv();
 */
export function readEnv(env: NodeJS.ProcessEnv = process.env): DistEnv {
  const worldSize = intVar(env, 'WORLD_SIZE', 1, 1 << 20);
  const rank = intVar(env, 'RANK', 0, worldSize - 1);
  const localWorldSize = intVar(env, 'LOCAL_WORLD_SIZE', 1, worldSize);
  const localRank = intVar(env, 'LOCAL_RANK', 0, localWorldSize - 1);
  const masterAddr = env.MASTER_ADDR;
  if (masterAddr === undefined || !/^[A-Za-z0-9.\-_:[\]]+$/.test(masterAddr)) envError('MASTER_ADDR', 'a host name or address', masterAddr);
  const masterPort = intVar(env, 'MASTER_PORT', 1, 65535);
  return { rank, worldSize, localRank, localWorldSize, masterAddr, masterPort };
}
