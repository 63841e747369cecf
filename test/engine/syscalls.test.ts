// Issue 10, acceptance 4: the syscalls real programs (and rr's test suite) use record and replay
// exactly, each from the declarative table; what replay could not reproduce is refused by name.
import { readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cleanupTemps,
  compile,
  describeRun,
  expectCleanFailure,
  expectRecorded,
  expectSameRun,
  record,
  replay,
  requireCli,
  run,
  tempDir,
} from './harness.js';

afterAll(cleanupTemps);

beforeAll(requireCli);

const RUNS = 5;

interface Corpus {
  name: string;
  extra?: string[];
  /** Runs it in a fresh directory of its own, given as its argument. */
  inDir?: boolean;
  /** Lines the run must print (record and replay print the same). */
  expect: RegExp[];
  /** Timing decides what it sees: recorded and replayed RUNS times. */
  timed?: boolean;
}

const corpus: Corpus[] = [
  {
    name: 'posix_timers',
    timed: true,
    expect: [
      /^timer_create: guard intact=1$/m,
      /^alarms=3 si_code_is_timer=1 overrun=1 timerid_matches=1$/m,
      /^gettime: interval=0\.002000000 value=0\.00\d{7}$/m,
      /^settime old: interval=0\.002000000 value=0\.00\d{7}$/m,
      /^usr1 value=4242 spun=1\ndeleted twice=-1$/m,
    ],
  },
  {
    name: 'thread_signals',
    extra: ['-pthread'],
    timed: true,
    expect: [
      /^pending SIGUSR1 taken by the thread that unblocked it: 1\nSIGUSR2 in the waiter: 1\n/m,
      /^timer's SIGALRM in the waiter: 1 value=99\nmain took none: 1\n$/m,
    ],
  },
  {
    name: 'sysv_ipc',
    timed: true,
    expect: [
      /^IPC_STAT=0 nsems=3 mode=600 intact=1 otime=\d+$/m,
      /^GETALL=0 values=2,0,1 intact=1$/m,
      /^SETALL=0 GETVAL\(1\)=5 GETPID_is_self=1$/m,
      /^child: msgrcv=17 type=2 text=message 2 at \d+$/m,
      /^child: semtimedop=0$/m,
      /^msgctl IPC_STAT=0 qnum=0 lrpid_is_child=1 intact=1 rtime=\d+$/m,
      /^msgrcv nowait=-1 ENOMSG$/m,
    ],
  },
  {
    name: 'mqueue',
    extra: ['-lrt'],
    expect: [
      /^notified=31$/m,
      /^mq_getattr=0 maxmsg=4 msgsize=64 curmsgs=1$/m,
      /^mq_receive=29 prio=7 text=sent at \d+\.\d{9} after=#$/m,
      /^nonblocking receive=-1 EAGAIN$/m,
      /^mq_timedreceive=-1 ETIMEDOUT$/m,
      /^mq_unlink=0 again=-1$/m,
    ],
  },
  {
    name: 'mmsg',
    inDir: true,
    expect: [
      /^sendmmsg=3 lens=33,38,43$/m,
      /^ {2}\[2\] len=43 namelen_ok=1 from_s=1 data=message 2 of \d+\.\d{9}-{10} after=#$/m,
      /^recvmmsg\(nothing queued\)=-1 EAGAIN$/m,
      /^recvmmsg\(with a descriptor\)=2 lens=33,4 controllen=\d+ fd_is_stdout=1 tail=tail$/m,
      /^time left=4\.\d{9}$/m,
    ],
  },
  {
    name: 'device_ioctls',
    inDir: true,
    expect: [
      /^TIOCGPTN=0 {2}value=\d+ guard=g{8}$/m,
      /^TIOCGPTLCK=0 {2}value=1 guard=g{8}$/m,
      /^TIOCGEXCL=0 {2}value=1 guard=g{8}$/m,
      /^FS_IOC_GETFLAGS=(0 {2}value=\d+|-1 (ENOTTY|EOPNOTSUPP) value=\d+) guard=g{8}$/m,
      /^RNDGETENTCNT=0 {2}value=\d+ guard=g{8}$/m,
    ],
  },
  {
    name: 'new_fds',
    inDir: true,
    expect: [
      /^eventfd: read=8 value=7$/m,
      /^inotify: read=32 wd_matches=1 mask=0x100 name=watched$/m,
      /^perf: read=8 task_clock_ns=\d+ id_ioctl=0 id=\d+$/m,
      /^mknod=0 mknodat=0 again=-1 EEXIST fifo=1 ino=\d+$/m,
      /^open_tree: ok=1 same_inode=1$/m,
      /^pidfd_getfd: ok=1 same_file=1$/m,
    ],
  },
  {
    name: 'process_state',
    expect: [
      /^sched_getattr=0 size=48 policy=\d+ nice=-?\d+ guard=g{8}$/m,
      /^sched_setattr\(too big\)=-1 E2BIG size_now=\d+$/m,
      /^get_robust_list=0 head_set=1 len=24$/m,
      /^process_vm_readv=6 dst=bcdklm\.{10}$/m,
      /^process_vm_writev=4 dst=bcdklm\.\.XY\.\.ZW\.\.$/m,
      /^rt_sigqueueinfo=0 got sig=10 value=-42 code_is_queue=1$/m,
      /^rt_tgsigqueueinfo=0 got sig=35 value=777 code_is_queue=1$/m,
      /^pidfd_send_signal=0 got sig=10 code_is_user=1$/m,
      /^get_mempolicy=0 mode=2 mask0=0x1 mask15=0 guard=g{8}$/m,
      /^modify_ldt=0 lsl valid=1 limit=0x4321$/m,
    ],
  },
  {
    name: 'kernel_queries',
    expect: [
      /^adjtimex=\d+ time=\d+\.\d{6} tick=\d+$/m,
      /^clock_settime\(monotonic\)=-1 EINVAL$/m,
      /^sysfs types=\d+ first=0 \w+$/m,
      /^_sysctl=-1 ENOSYS value=-1$/m,
      /^keyctl describe=\d+ user;\d+;\d+;[0-9a-f]+;rewind test$/m,
      /^bpf lookup=0 twelve bytes#{4}$/m,
      /^bpf next_key=0 key=7$/m,
      /^open \/ after landlock=-1 EACCES$/m,
    ],
  },
  {
    name: 'proc_self_mem',
    expect: [/^pwrite=8 a_is_now=1\nwrite=8 b=7\npwritev=16 c=30,40\npatched code=6 answer=42\na=\d+\n$/],
  },
  {
    name: 'robust_mutex',
    extra: ['-pthread'],
    timed: true,
    expect: [
      /^after the thread died: lock=EOWNERDEAD consistent=0 unlock=0\nagain: lock=0$/m,
      /^after the child exited \(3\): lock=EOWNERDEAD consistent=0$/m,
      /^after the child died of signal 6: lock=EOWNERDEAD consistent=0$/m,
    ],
  },
];

describe.each(corpus)('$name', (c) => {
  const exe = (): string => compile(c.name, { extra: c.extra });
  const workDir = (): string | undefined => (c.inDir ? tempDir(`rewind-${c.name}-`) : undefined);

  it('natively prints what the corpus expects', async () => {
    const dir = workDir();
    const r = await run(exe(), dir ? [dir] : []);
    expect(r.status, describeRun(r)).toBe(0);
    for (const line of c.expect) expect(r.stdout.toString()).toMatch(line);
  });

  it(`records and replays byte for byte${c.timed ? `, ${RUNS} times` : ''}`, async () => {
    const program = exe();
    for (let i = 0; i < (c.timed ? RUNS : 1); i++) {
      const dir = workDir();
      const rec = await record(program, dir ? [dir] : []);
      expectRecorded(rec, 0);
      for (const line of c.expect) expect(rec.stdout.toString(), describeRun(rec)).toMatch(line);
      expectSameRun(rec, await replay(rec.traceDir));
      // The program removed what it made there; replay made nothing.
      if (dir) expect(readdirSync(dir)).toEqual([]);
    }
  });
});

describe('refused by name at record time', () => {
  it('a mapping of a perf counter ring buffer, which the kernel keeps writing', async () => {
    const rec = await record(compile('unreplayable'), ['perf-mmap']);
    expectCleanFailure(rec, /the program mapped a descriptor of anon_inode:\[perf_event\] into memory/);
  });

  it("process_vm_writev into another process's memory", async () => {
    const rec = await record(compile('unreplayable'), ['vm-writev']);
    expectCleanFailure(rec, /wrote into another process's memory with process_vm_writev/);
  });

  it("a write into another process's memory through /proc/PID/mem", async () => {
    const rec = await record(compile('unreplayable'), ['proc-mem']);
    expectCleanFailure(rec, /wrote into another process's memory through \/proc\/\d+\/mem with pwrite64/);
  });
});
