
/*
 * SHA-256, for API keys: the database stores only the digest of a key, the
 * worker computes it at creation, the module at each request; both through
 * libcrypto, which nginx and libpq load already.
 */


#ifndef _CHATHISTORY_SHA256_H_INCLUDED_
#define _CHATHISTORY_SHA256_H_INCLUDED_


#include <stddef.h>


#define CHATHISTORY_SHA256_LEN  32


/* 0, or -1 if libcrypto failed (out of memory): digest is then all zeros */
int chathistory_sha256(const void *data, size_t len,
    unsigned char digest[CHATHISTORY_SHA256_LEN]);


#endif /* _CHATHISTORY_SHA256_H_INCLUDED_ */
