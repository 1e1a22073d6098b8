// STAGEDB_EXPORT marks the public API: the classes and functions of include/stagedb that
// libstagedb and the app libraries export. They are compiled with hidden visibility, so
// everything else (the `internal` namespaces) stays out of the ABI and may change freely.
#ifndef STAGEDB_EXPORT_H_
#define STAGEDB_EXPORT_H_

// The same attribute in the libraries and in their users: on ELF an undefined symbol's
// visibility does not matter, so no export/import switch is needed (as GenerateExportHeader
// writes it for GCC and Clang).
#if defined(__GNUC__) || defined(__clang__)
#define STAGEDB_EXPORT __attribute__((visibility("default")))
#else
#define STAGEDB_EXPORT
#endif

#endif  // STAGEDB_EXPORT_H_
