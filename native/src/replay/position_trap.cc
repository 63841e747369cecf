#include "replay/position_trap.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstring>

#include "core/code_writer.h"
#include "core/error.h"
#include "core/memory_map.h"
#include "core/remote_syscalls.h"
#include "core/x86_instruction.h"

namespace rwd {
namespace {

constexpr uint64_t kPage = 4096;
// The last word of each trampoline page ("rwdtramp").
constexpr uint64_t kPageMark = 0x706d617274647772;
constexpr int64_t kReach = (int64_t(1) << 31) - 2 * int64_t(kPage);

bool reaches(uint64_t from, uint64_t to) {
  int64_t d = int64_t(to - from);
  return d > -kReach && d < kReach;
}

// A free page as close to `near` as the address space allows, or 0.
uint64_t freePageNear(pid_t pid, uint64_t near) {
  std::vector<MapsEntry> maps = readMemoryMap(pid);
  uint64_t best = 0;
  uint64_t lowest = 0x10000;  // below: vm.mmap_min_addr
  auto consider = [&](uint64_t gapStart, uint64_t gapEnd) {
    if (gapStart < lowest) gapStart = lowest;
    if (gapEnd < gapStart + kPage) return;
    uint64_t page = near < gapStart ? gapStart : gapEnd - kPage;
    if (near >= gapStart && near < gapEnd) page = near & ~(kPage - 1);
    if (!reaches(near, page) || !reaches(near, page + kPage)) return;
    auto dist = [&](uint64_t p) { return p > near ? p - near : near - p; };
    if (!best || dist(page) < dist(best)) best = page;
  };
  uint64_t prevEnd = 0;
  for (const MapsEntry& m : maps) {
    consider(prevEnd, m.start);
    prevEnd = m.end;
  }
  consider(prevEnd, 0x7ffffffff000ull);
  return best;
}

}  // namespace

bool atPosition(const Task& task, const Regs& r, const PreemptEvent& p) {
  if (r.rip != p.regs.rip || !samePosition(r, p.regs) || stackHash(task, r.rsp) != p.stackHash) {
    return false;
  }
  for (const MemoryWord& w : p.words) {
    uint64_t v;
    if (!task.tryRead(w.addr, &v, sizeof v) || v != w.value) return false;
  }
  return true;
}

std::unique_ptr<PositionTrap> PositionTrap::install(Task& task, const StubLayout& stub,
                                                    TrampolinePages& pages,
                                                    const PreemptEvent& position) {
  const Regs& target = position.regs;
  const uint64_t at = target.rip;
  uint8_t code[15];
  if (!task.tryRead(at, code, sizeof code)) return nullptr;
  X86Instruction insn = decodeX86(code, sizeof code);
  if (!relocatable(insn)) return nullptr;

  // A page replay made earlier is gone when a replayed mmap, munmap or mprotect took its place
  // (the recorded program never knew of it): its mark says whether it is still there.
  auto ours = [&](uint64_t p) {
    uint64_t mark = 0;
    return task.tryRead(p + kPage - sizeof mark, &mark, sizeof mark) && mark == kPageMark;
  };
  pages.pages.erase(
      std::remove_if(pages.pages.begin(), pages.pages.end(), [&](uint64_t p) { return !ours(p); }),
      pages.pages.end());
  uint64_t page = 0;
  for (uint64_t p : pages.pages) {
    if (reaches(at, p) && reaches(at, p + kPage)) page = p;
  }
  if (!page) {
    uint64_t want = freePageNear(task.tid(), at);
    if (!want) return nullptr;
    RemoteSyscalls remote(task, stub.gadget);
    // Writable too: the trampoline keeps rax and the flags in it.
    long got = remote.call(SYS_mmap, want, kPage, PROT_READ | PROT_WRITE | PROT_EXEC,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, uint64_t(-1), 0);
    if (uint64_t(got) != want) return nullptr;
    page = want;
    task.write(page + kPage - sizeof kPageMark, &kPageMark, sizeof kPageMark);
    pages.pages.push_back(page);
  }

  // The trampoline touches neither the stack nor the red zone: what it wrote there would stay
  // behind in stack memory that the program reuses (and that later positions hash). rax and the
  // flags are kept in slots of the trampoline's own page instead.
  const uint64_t values[] = {target.rax, target.rcx, target.rdx, target.rbx, target.rbp,
                             target.rsi, target.rdi, target.r8,  target.r9,  target.r10,
                             target.r11, target.r12, target.r13, target.r14, target.r15};
  const size_t nRegs = sizeof values / sizeof values[0];
  std::vector<uint64_t> slotValues(values, values + nRegs);
  for (const MemoryWord& word : position.words) slotValues.push_back(word.value);
  const size_t savedRax = slotValues.size(), savedFlags = savedRax + 1;
  slotValues.push_back(0);
  slotValues.push_back(0);

  CodeWriter w(page);
  std::vector<std::pair<uint64_t, size_t>> slotFields;  // rel32 field address, slot
  std::vector<uint64_t> missFields;
  // An instruction whose last field is a rel32 to slot `slot`.
  auto withSlot = [&](std::initializer_list<uint8_t> opcode, size_t slot) {
    w.emit(opcode);
    slotFields.emplace_back(w.here(), slot);
    w.emit32(0);
  };
  auto jumpIfMiss = [&]() {
    w.emit({0x0f, 0x85});  // jne miss
    missFields.push_back(w.here());
    w.emit32(0);
  };
  withSlot({0x48, 0x89, 0x05}, savedRax);    // mov [rip+savedRax],rax
  w.emit({0x9f, 0x0f, 0x90, 0xc0});          // lahf; seto al
  withSlot({0x48, 0x89, 0x05}, savedFlags);  // mov [rip+savedFlags],rax
  withSlot({0x48, 0x8b, 0x05}, savedRax);    // mov rax,[rip+savedRax]
  // cmp reg,[rip+slot]; jne miss — for every general register but rsp.
  const int regNumbers[] = {0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  for (size_t i = 0; i < nRegs; i++) {
    int r = regNumbers[i];
    withSlot({uint8_t(r >= 8 ? 0x4c : 0x48), 0x3b, uint8_t(((r & 7) << 3) | 5)}, i);
    jumpIfMiss();
  }
  // movabs rax,ADDR; mov rax,[rax]; cmp rax,[rip+slot]; jne miss — for each word of memory.
  for (size_t i = 0; i < position.words.size(); i++) {
    uint64_t addr = position.words[i].addr;
    w.emit({0x48, 0xb8});
    w.emit64(addr);
    w.emit({0x48, 0x8b, 0x00});
    withSlot({0x48, 0x3b, 0x05}, nRegs + i);
    jumpIfMiss();
  }
  // mov rax,[rip+savedFlags]; add al,0x7f (OF again); sahf; mov rax,[rip+savedRax]
  auto restore = [&]() {
    withSlot({0x48, 0x8b, 0x05}, savedFlags);
    w.emit({0x04, 0x7f, 0x9e});
    withSlot({0x48, 0x8b, 0x05}, savedRax);
  };
  // All equal: int3 — the tracer looks at the stack and decides.
  restore();
  uint64_t matchTrap = w.here();
  w.emit({0xcc});
  uint64_t miss = w.here();
  restore();
  uint64_t copy = w.here();
  std::vector<uint8_t> moved(code, code + insn.length);
  if (insn.ripRelative) {
    // The operand's address is relative to the next instruction: keep it pointing where it did.
    int32_t disp;
    memcpy(&disp, &moved[insn.dispOffset], 4);
    uint64_t operand = at + insn.length + int64_t(disp);
    if (!reaches(copy + insn.length, operand)) return nullptr;
    int32_t moved32 = int32_t(int64_t(operand - (copy + insn.length)));
    memcpy(&moved[insn.dispOffset], &moved32, 4);
  }
  w.emit(moved);
  w.emit({0xe9});
  uint64_t back = w.here();
  w.emit32(0);
  uint64_t slots = (w.here() + 7) & ~uint64_t(7);
  while (w.here() < slots) w.emit({0xcc});
  for (uint64_t v : slotValues) w.emit64(v);
  for (auto& [field, slot] : slotFields) w.patch32(field, slots + 8 * slot);
  for (uint64_t field : missFields) w.patch32(field, miss);
  w.patch32(back, at + insn.length);
  if (w.bytes().size() > kPage - sizeof kPageMark) return nullptr;
  task.write(page, w.bytes().data(), w.bytes().size());

  std::unique_ptr<PositionTrap> trap(
      new PositionTrap(task, at, std::vector<uint8_t>(code, code + insn.length)));
  trap->matchTrap_ = matchTrap;
  trap->copy_ = copy;
  uint8_t jump[5] = {0xe9};
  int32_t rel = int32_t(int64_t(page - (at + 5)));
  memcpy(jump + 1, &rel, 4);
  task.write(at, jump, sizeof jump);
  return trap;
}

PositionTrap::~PositionTrap() { task_.tryWrite(at_, original_.data(), original_.size()); }

}  // namespace rwd
