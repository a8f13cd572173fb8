#ifndef CJWT_SHIM_H
#define CJWT_SHIM_H
#include <jwt.h>
/* GnuTLS verifies RFC 9068 access tokens (typ at+jwt), which libjwt 1.10 refuses to decode. */
#include <gnutls/gnutls.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#endif
