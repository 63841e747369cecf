import type { Command } from 'commander';
import { registerRecord } from './record.js';
import { registerReplay } from './replay.js';
import { registerDebug } from './debug.js';
import { registerInfo } from './info.js';
import { registerDump } from './dump.js';
import { registerQuery } from './query.js';
import { registerPush } from './push.js';
import { registerLs } from './ls.js';
import { registerShow } from './show.js';
import { registerRm } from './rm.js';
import { registerServer } from './server.js';
import { registerToken } from './token.js';
import { registerHosts } from './hosts.js';
import { registerAgent } from './agent.js';
import { registerCompletion } from './completion.js';

/** Every command, in the order `rewind --help` lists them. */
export function registerCommands(program: Command): void {
  registerRecord(program);
  registerReplay(program);
  registerDebug(program);
  registerInfo(program);
  registerDump(program);
  registerQuery(program);
  registerPush(program);
  registerLs(program);
  registerShow(program);
  registerRm(program);
  registerServer(program);
  registerToken(program);
  registerHosts(program);
  registerAgent(program);
  registerCompletion(program);
}
