// See module.modulemap. Empty where there is no <malloc.h> (Swift code checks canImport(Glibc)).
#if defined(__linux__)
#include <malloc.h>
#endif
