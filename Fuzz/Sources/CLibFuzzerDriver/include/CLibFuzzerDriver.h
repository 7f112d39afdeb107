#ifndef FLYWHEEL_CLIBFUZZERDRIVER_H
#define FLYWHEEL_CLIBFUZZERDRIVER_H

#include <stddef.h>
#include <stdint.h>

// libFuzzer's driver (compiler-rt's libclang_rt.fuzzer, linked by `-sanitize=fuzzer`): parses libFuzzer's
// flags from argv and fuzzes `callback`. Our executables call it from their own `main`.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
