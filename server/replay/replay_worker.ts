// A replay session's worker process: `node replay_worker.js DIR` replays the trace directory,
// writing the program's recorded stdout and stderr, and exits with its recorded status (125 when
// replay fails). One process a session, so a crash or a hostile trace ends only that session.
import { replayTrace } from '../../trace/replay.js';
import { reportError } from '../../trace/user_error.js';

try {
  process.exitCode = await replayTrace(process.argv[2] ?? '.', { nameById: true });
} catch (err) {
  process.exitCode = reportError(err);
}
