// The debug session's own thread. The engine's session and the protocol handling run here, on
// the thread that ptrace ties the replayed processes to, so that the connection's thread stays
// free while a resume runs: it reads gdb's Ctrl-C (0x03) and passes it on through a shared word.
import { parentPort, workerData } from 'node:worker_threads';
import { confine, engineErrorCode, stubPath, type DebugSession } from '../native/index.js';
import { requireEngine } from '../trace/engine.js';
import { eventsPath, readManifest } from '../trace/manifest.js';
import { UserError } from '../trace/user_error.js';
import { errorReply, errorText, GdbServer, type Response } from './gdb_server.js';
import { log } from './log.js';
import type { FromSession, SessionStart, ToSession } from './session_thread.js';
import { TraceFiles } from './trace_files.js';

function startSession(dir: string, programStdout: number, nameById: boolean): { session: DebugSession; files: TraceFiles } {
  const manifest = readManifest(dir);
  const events = eventsPath(manifest, dir);
  if (!manifest.complete) log('this recording was cut short (the recorder was killed); its history ends where the recording does');
  const engine = requireEngine();
  let session: DebugSession;
  try {
    confine(dir);
    session = engine.debug({
      traceDir: dir,
      eventsPath: events,
      stubPath: stubPath(),
      traceName: nameById ? manifest.id : undefined,
      stdoutFd: programStdout,
      stderrFd: 2,
    });
  } catch (err) {
    const code = engineErrorCode(err);
    throw new UserError(`cannot start a debug session on ${dir}: ${errorText(err)}`, code === 'EBADTRACE' || code === 'EDIVERGED' ? 125 : 1);
  }
  return { session, files: new TraceFiles(dir, manifest.blobs) };
}

function serve(port: NonNullable<typeof parentPort>, start: SessionStart): void {
  const send = (m: FromSession): void => port.postMessage(m);
  let gdb: GdbServer;
  const interrupt = new Int32Array(start.interrupt);
  try {
    const { session, files } = startSession(start.dir, start.programStdout, start.nameById ?? false);
    session.watchInterrupt(interrupt);
    gdb = new GdbServer(session, files, { log, interruptTaken: () => Atomics.store(interrupt, 0, 0) });
  } catch (err) {
    send({ type: 'failed', message: errorText(err), exitCode: err instanceof UserError ? err.exitCode : 1 });
    return;
  }
  send({ type: 'ready' });
  port.on('message', (m: ToSession) => {
    switch (m.type) {
      case 'packet': {
        let response: Response;
        try {
          response = gdb.handle(Buffer.from(m.payload));
        } catch (err) {
          response = { packets: [errorReply(errorText(err))] };
        }
        send({ type: 'reply', response });
        break;
      }
      case 'clientGone':
        // An interrupt still pending was the departed client's.
        Atomics.store(interrupt, 0, 0);
        gdb.clientGone();
        break;
      case 'close':
        gdb.close();
        port.close();  // the thread ends, which the other side waits for
        break;
    }
  });
}

if (parentPort) serve(parentPort, workerData as SessionStart);
