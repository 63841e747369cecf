// The debug session's own thread. The engine's session and the protocol handling run here, on
// the thread that ptrace ties the replayed processes to, so that the connection's thread stays
// free while a resume runs: it reads gdb's Ctrl-C (0x03) and passes it on through a shared word.
import { fstatSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { confine, engineErrorCode, stubPath, type DebugSession } from '../native/index.js';
import { requireEngine } from '../trace/engine.js';
import { eventsPath, readManifest, type ManifestProcess } from '../trace/manifest.js';
import { UserError } from '../trace/user_error.js';
import { errorReply, errorText, GdbServer, type Response } from './gdb_server.js';
import { log } from './log.js';
import type { FromSession, ProcessChoice, SessionStart, ToSession } from './session_thread.js';
import { checkBlobs, TraceFiles } from './trace_files.js';

/** The recorded pid and program of the process to debug; undefined: the recorded program. */
function chooseProcess(processes: readonly ManifestProcess[], choice: ProcessChoice | undefined): { pid: number; exe?: string } | undefined {
  if (choice?.pid === undefined && choice?.exec === undefined) return undefined;
  const named = (e: { exe: string }): boolean => e.exe === choice.exec || e.exe.split('/').pop() === choice.exec;
  const candidates = processes.filter((p) => choice.pid === undefined || p.pid === choice.pid);
  if (candidates.length === 0) throw new UserError(`--pid ${choice.pid}: no such process in the recording (monitor processes lists them)`);
  if (choice.exec === undefined) return { pid: candidates[0]!.pid };
  for (const p of candidates) {
    const exec = p.execs.find(named);
    if (exec) return { pid: p.pid, exe: exec.exe };
  }
  throw new UserError(`--exec ${choice.exec}: no process${choice.pid === undefined ? '' : ` ${choice.pid}`} of the recording runs it (monitor processes lists them)`);
}

function startSession(
  dir: string,
  programStdout: number,
  programStderr: number,
  nameById: boolean,
  choice: ProcessChoice | undefined,
): { session: DebugSession; files: TraceFiles; processes: ManifestProcess[] } {
  const manifest = readManifest(dir);
  const debuggee = chooseProcess(manifest.processes, choice);
  const events = eventsPath(manifest, dir);
  checkBlobs(dir, manifest.blobs);
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
      stderrFd: programStderr,
      ...debuggee,
    });
  } catch (err) {
    const code = engineErrorCode(err);
    throw new UserError(`cannot start a debug session on ${dir}: ${errorText(err)}`, code === 'EBADTRACE' || code === 'EDIVERGED' ? 125 : 1);
  }
  return { session, files: new TraceFiles(dir, manifest.blobs), processes: manifest.processes };
}

/**
 * The program's output, for the debugger's console: replay writes it to a file of its own (a
 * pipe would block replay once full, with nobody reading it while a resume runs), and what is
 * new after each command goes out with its reply.
 */
class ProgramOutput {
  readonly fd: number;
  private offset = 0;

  constructor() {
    const dir = mkdtempSync(join(tmpdir(), 'rewind-output-'));
    const path = join(dir, 'output');
    this.fd = openSync(path, 'w+', 0o600);
    // Nothing to clean up later: the file lives on only as long as the descriptor.
    rmSync(dir, { recursive: true, force: true });
  }

  take(): Buffer {
    const size = fstatSync(this.fd).size;
    if (size <= this.offset) return Buffer.alloc(0);
    const buf = Buffer.alloc(size - this.offset);
    const n = readSync(this.fd, buf, 0, buf.length, this.offset);
    this.offset += n;
    return buf.subarray(0, n);
  }
}

function serve(port: NonNullable<typeof parentPort>, start: SessionStart): void {
  const send = (m: FromSession): void => port.postMessage(m);
  let gdb: GdbServer;
  const interrupt = new Int32Array(start.interrupt, 0, 1);
  try {
    const output = start.programStdout === 'console' ? new ProgramOutput() : undefined;
    const fd = output?.fd ?? (start.programStdout as number);
    const { session, files, processes } = startSession(start.dir, fd, output?.fd ?? 2, start.nameById ?? false, start.process);
    session.watchInterrupt(interrupt);
    session.watchProgress(new Int32Array(start.interrupt, 4, 1));
    gdb = new GdbServer(session, files, { log, interruptTaken: () => Atomics.store(interrupt, 0, 0), programOutput: output && (() => output.take()), processes });
    if (start.at) gdb.startAt(start.at);
  } catch (err) {
    send({ type: 'failed', message: errorText(err), exitCode: err instanceof UserError ? err.exitCode : 1 });
    return;
  }
  send({ type: 'ready', events: gdb.events });
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
