
/*
 * SHA-256 (FIPS 180-4), for API keys: the database stores only the digest
 * of a key, the worker computes it at creation, the module at each request.
 * Plain C99, no allocation, no global state.
 */


#ifndef _CHATHISTORY_SHA256_H_INCLUDED_
#define _CHATHISTORY_SHA256_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define CHATHISTORY_SHA256_LEN  32


typedef struct {
    uint32_t       state[8];
    uint64_t       bytes;
    unsigned char  buf[64];
    size_t         nbuf;
} chathistory_sha256_t;


void chathistory_sha256_init(chathistory_sha256_t *ctx);
void chathistory_sha256_update(chathistory_sha256_t *ctx, const void *data,
    size_t len);
void chathistory_sha256_final(chathistory_sha256_t *ctx,
    unsigned char digest[CHATHISTORY_SHA256_LEN]);

/* the three above in one call */
void chathistory_sha256(const void *data, size_t len,
    unsigned char digest[CHATHISTORY_SHA256_LEN]);


#endif /* _CHATHISTORY_SHA256_H_INCLUDED_ */
