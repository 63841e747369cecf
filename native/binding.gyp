{
  "targets": [
    {
      "target_name": "rewind",
      "sources": [
        "src/core/blob_store.cc",
        "src/core/event_stream.cc",
        "src/core/events.cc",
        "src/core/forced_sigsegv.cc",
        "src/core/kick.cc",
        "src/core/memory_image.cc",
        "src/core/snapshot_image.cc",
        "src/core/sparse_blob.cc",
        "src/core/memory_map.cc",
        "src/core/proc_files.cc",
        "src/core/remote_syscalls.cc",
        "src/core/spawn.cc",
        "src/core/syscall_table.cc",
        "src/core/syscall_trampoline.cc",
        "src/core/task.cc",
        "src/core/vdso.cc",
        "src/record/emulated_ptrace.cc",
        "src/record/exec_snapshot.cc",
        "src/record/pid_namespace.cc",
        "src/record/record_session.cc",
        "src/record/seccomp_filter.cc",
        "src/record/shared_files.cc",
        "src/record/syscall_buffer.cc",
        "src/core/syscall_buffers.cc",
        "src/replay/address_space_builder.cc",
        "src/replay/breakpoints.cc",
        "src/replay/checkpoint.cc",
        "src/replay/code_coverage.cc",
        "src/replay/debug_session.cc",
        "src/replay/emulated_files.cc",
        "src/replay/position_trap.cc",
        "src/replay/query.cc",
        "src/core/x86_instruction.cc",
        "src/replay/replay_session.cc",
        "src/replay/robust_futexes.cc",
        "src/replay/trace_blobs.cc",
        "src/sandbox/confine.cc",
        "src/sandbox/seccomp.cc",
        "src/binding/addon.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "src"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-fexceptions", "-frtti"]
    },
    {
      "target_name": "rewind-sandbox",
      "type": "executable",
      "sources": ["src/sandbox/launcher.cc"],
      "include_dirs": ["src"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Werror"]
    },
    {
      "target_name": "rewind-preload",
      "type": "shared_library",
      "product_extension": "so",
      "sources": ["src/preload/syscall_buffer.c"],
      "include_dirs": ["src"],
      "cflags": ["-std=c11", "-O2", "-fPIC", "-mno-red-zone", "-fvisibility=hidden", "-Wall",
                 "-Wextra", "-Werror"]
    },
    {
      "target_name": "rewind-stub",
      "type": "none",
      "actions": [
        {
          "action_name": "link_stub",
          "inputs": ["stub/stub.S"],
          "outputs": ["<(PRODUCT_DIR)/rewind-stub"],
          "action": ["gcc", "-nostdlib", "-static", "-no-pie", "-Wl,-Ttext-segment=0x100000000000",
                     "-Wl,--build-id=none", "-o", "<(PRODUCT_DIR)/rewind-stub", "stub/stub.S"]
        }
      ]
    }
  ]
}
