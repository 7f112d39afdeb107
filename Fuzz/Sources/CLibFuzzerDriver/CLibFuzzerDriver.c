// Only the declaration in include/CLibFuzzerDriver.h; SwiftPM wants a source file in every C target.
#include "CLibFuzzerDriver.h"
