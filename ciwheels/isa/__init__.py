"""ISA families (x86_64 levels, riscv64 profiles, aarch64, ...) behind one protocol: flags,
probes, the QEMU CPU of a level, and what an ELF binary needs.

May import: core, catalog."""
