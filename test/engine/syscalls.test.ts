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
    name: 'net_ioctls',
    expect: [
      /^TUNGETFEATURES=0 tap=1 guard=g{8}\nTUNSETIFF=0 {2}name=(tap\d+) guard=g{8}\nTUNGETIFF=0 name=\1 flags=0x1002 guard=g{8}$/m,
      /^TUNGETSNDBUF=0 value=65536 guard=g{8}$/m,
      /^TUNGETVNETHDRSZ=0 value=12 guard=g{8}$/m,
      /^TUNGETFILTER=0 len=0 guard=x{8}$/m,
      /^SIOCGIFHWADDR=0 mac=([0-9a-f]{2}:){5}[0-9a-f]{2} guard=g{8}$/m,
      /^SIOCGIFNAME=0 name=tap\d+ guard=g{8}$/m,
      /^SIOCGIFADDR=0 addr=10\.9\.8\.7 guard=g{8}\nSIOCGIFNETMASK=0 mask=255\.255\.0\.0 guard=g{8}\nSIOCGIFBRDADDR=0 brd=10\.9\.255\.255 guard=g{8}$/m,
      /^SIOCGIFMTU=0 mtu=1400 guard=g{8}$/m,
      /^SIOCGIFFLAGS=0 up=1 guard=g{8}$/m,
      /^SIOCADDRT=0 SIOCDELRT=0\nSIOCBRADDBR=0 \nSIOCBRADDIF=0 SIOCBRDELIF=0\nBRCTL_GET_VERSION=1\nBRCTL_ADD_BRIDGE=0$/m,
      /^BRCTL_GET_BRIDGES=2 \d+ \d+ guard=g{8}\nSIOCGIFBR\(nonsense\)=-1 EOPNOTSUPP\nBRCTL_DEL_BRIDGE=0 SIOCBRDELBR=0$/m,
    ],
  },
  {
    name: 'bpf_objects',
    expect: [
      /^PROG_LOAD\(bad\)=-1 EACCES true_size_set=1 guard=g{8}\nbad log: .*\| R0 !read_ok \| processed 1 insns .*\|$/m,
      /^PROG_LOAD=fd guard=g{8}\nok log: processed 2 insns .*\|$/m,
      /^MAP_LOOKUP_ELEM\(2\)=0 value=200\d guard=g{8}\nMAP_LOOKUP_AND_DELETE_ELEM\(3\)=0 {2}value=300\d guard=g{8}$/m,
      /^MAP_GET_NEXT_KEY key=\d guard=g{8}\nMAP_GET_NEXT_KEY key=\d guard=g{8}\nkeys=2 then ENOENT$/m,
      /^BTF_LOAD=fd guard=g{8}$/m,
      /^prog info=0 len=232 type=22 name=rewind_ok uid_is_mine=1 load_time=\d+ tag=[0-9a-f]{16} guard=g{8}$/m,
      /^map info=0 len=88 type=1 name=rewind_map key_size=4 value_size=8 max=8 guard=g{8}$/m,
      /^btf info=0 size=45 id_set=1 kernel=0 guard=g{8}$/m,
      /^PROG_GET_NEXT_ID=0 next_id_set=1\nPROG_GET_FD_BY_ID=fd$/m,
      /^PROG_QUERY=0 {2}prog_cnt=0 guard=g{8}\nPROG_ATTACH=0 \nPROG_QUERY=0 {2}prog_cnt=1 ids=ours,0,0,0 guard=g{8}\nPROG_DETACH=0 $/m,
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
      /^adjtimex=\d+ time=\d+\.(?:\d{6}|\d{9}) tick=\d+$/m,
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
    name: 'proc_mem_other',
    timed: true,
    expect: [0, 1, 2, 3].map(
      (round) =>
        new RegExp(
          `^round ${round} parent: wrote (\\d+): pwrite=4 pwritev=4 write=4 read-only=4\\nround ${round} child: \\1 \\1 \\1 read-only=${100 + round}\\nround ${round} child exited 0, parent's own cookies 0 0 0$`,
          'm',
        ),
    ),
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

  it("bpf's description of a program with the buffers it points to, and a bpf command rewind does not know", async () => {
    const exe = compile('unreplayable');
    expectCleanFailure(
      await record(exe, ['bpf-insns']),
      /asked bpf \(OBJ_GET_INFO_BY_FD\) for more than the description of bpf-prog/,
    );
    expectCleanFailure(await record(exe, ['bpf-run']), /the program used bpf request 0xa, which rewind cannot record yet/);
  });

  it("a write into another process's memory through /proc/PID/mem while that process computes", async () => {
    const rec = await record(compile('unreplayable'), ['proc-mem']);
    expectCleanFailure(rec, /wrote into another process's memory through \/proc\/\d+\/mem while that process ran/);
  });
});
