#include "core/vdso.h"

#include <elf.h>
#include <sys/syscall.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"

namespace rwd {
namespace {

struct Replacement {
  const char* symbol;
  long nr;  // -1: return -ENOSYS so the C library falls back to the syscall
};

const Replacement kReplacements[] = {
    {"__vdso_clock_gettime", SYS_clock_gettime},
    {"__vdso_gettimeofday", SYS_gettimeofday},
    {"__vdso_time", SYS_time},
    {"__vdso_getcpu", SYS_getcpu},
    {"__vdso_clock_getres", SYS_clock_getres},
    {"__vdso_getrandom", -1},
};

}  // namespace

VdsoPatch patchVdso(Task& task, uint64_t start, uint64_t end) {
  std::vector<uint8_t> image = task.readBytes(start, end - start);
  auto bad = []() -> void { fail(ErrorCode::System, "cannot parse the vDSO"); };
  if (image.size() < sizeof(Elf64_Ehdr) || memcmp(image.data(), ELFMAG, SELFMAG) != 0) bad();
  Elf64_Ehdr eh;
  memcpy(&eh, image.data(), sizeof eh);
  if (eh.e_shoff + uint64_t(eh.e_shnum) * sizeof(Elf64_Shdr) > image.size()) bad();
  std::vector<Elf64_Shdr> sections(eh.e_shnum);
  memcpy(sections.data(), image.data() + eh.e_shoff, eh.e_shnum * sizeof(Elf64_Shdr));

  VdsoPatch patch;
  for (const Elf64_Shdr& sh : sections) {
    if (sh.sh_type != SHT_DYNSYM || sh.sh_link >= sections.size()) continue;
    const Elf64_Shdr& strtab = sections[sh.sh_link];
    if (sh.sh_offset + sh.sh_size > image.size() ||
        strtab.sh_offset + strtab.sh_size > image.size()) {
      bad();
    }
    for (uint64_t off = 0; off + sizeof(Elf64_Sym) <= sh.sh_size; off += sizeof(Elf64_Sym)) {
      Elf64_Sym sym;
      memcpy(&sym, image.data() + sh.sh_offset + off, sizeof sym);
      if (sym.st_name >= strtab.sh_size || ELF64_ST_TYPE(sym.st_info) != STT_FUNC) continue;
      const char* name =
          reinterpret_cast<const char*>(image.data() + strtab.sh_offset + sym.st_name);
      for (const Replacement& r : kReplacements) {
        if (strcmp(name, r.symbol) != 0) continue;
        // The vDSO is linked at 0, so a symbol's value is its offset in the mapping.
        uint64_t at = start + sym.st_value;
        if (r.nr >= 0) {
          // mov eax, nr; syscall; ret
          uint8_t code[8] = {0xb8, 0, 0, 0, 0, 0x0f, 0x05, 0xc3};
          uint32_t nr = uint32_t(r.nr);
          memcpy(code + 1, &nr, 4);
          task.write(at, code, sizeof code);
          patch.syscallGadget = at + 5;
        } else {
          // mov rax, -ENOSYS; ret
          uint8_t code[8] = {0x48, 0xc7, 0xc0, 0xda, 0xff, 0xff, 0xff, 0xc3};
          task.write(at, code, sizeof code);
        }
      }
    }
  }
  if (!patch.syscallGadget) fail(ErrorCode::System, "the vDSO has no clock_gettime to patch");
  return patch;
}

long vsyscallNumber(uint64_t ip) {
  switch (ip) {
    case kVsyscallPage:
      return SYS_gettimeofday;
    case kVsyscallPage + 0x400:
      return SYS_time;
    case kVsyscallPage + 0x800:
      return SYS_getcpu;
  }
  return -1;
}

bool patchVsyscallCall(uint8_t* code, uint64_t entry) {
  const long nr = vsyscallNumber(entry);
  int32_t imm;
  memcpy(&imm, code + 3, sizeof imm);
  // mov $imm32,%rax (sign-extended); call *%rax
  if (nr < 0 || code[0] != 0x48 || code[1] != 0xc7 || code[2] != 0xc0 || code[7] != 0xff ||
      code[8] != 0xd0 || uint64_t(int64_t(imm)) != entry) {
    return false;
  }
  imm = int32_t(nr);
  memcpy(code + 3, &imm, sizeof imm);
  code[7] = 0x0f;  // syscall
  code[8] = 0x05;
  return true;
}

}  // namespace rwd
