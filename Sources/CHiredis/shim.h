#ifndef CHIREDIS_SHIM_H
#define CHIREDIS_SHIM_H
#include <sys/time.h>
#include <hiredis/hiredis.h>
#endif
