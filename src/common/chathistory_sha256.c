
/*
 * SHA-256 (FIPS 180-4).
 */


#include <string.h>

#include "chathistory_sha256.h"


#define CH_ROTR(x, n)  (((x) >> (n)) | ((x) << (32 - (n))))


static void ch_sha256_block(uint32_t state[8], const unsigned char *p);


static const uint32_t  ch_sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
    0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
    0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};


void
chathistory_sha256_init(chathistory_sha256_t *ctx)
{
    static const uint32_t  h0[8] = {
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
    };

    memcpy(ctx->state, h0, sizeof(h0));
    ctx->bytes = 0;
    ctx->nbuf = 0;
}


void
chathistory_sha256_update(chathistory_sha256_t *ctx, const void *data,
    size_t len)
{
    size_t               n;
    const unsigned char *p;

    p = data;
    ctx->bytes += len;

    while (len > 0) {
        n = 64 - ctx->nbuf;
        if (n > len) {
            n = len;
        }

        memcpy(ctx->buf + ctx->nbuf, p, n);
        ctx->nbuf += n;
        p += n;
        len -= n;

        if (ctx->nbuf == 64) {
            ch_sha256_block(ctx->state, ctx->buf);
            ctx->nbuf = 0;
        }
    }
}


void
chathistory_sha256_final(chathistory_sha256_t *ctx,
    unsigned char digest[CHATHISTORY_SHA256_LEN])
{
    int            i;
    uint64_t       bits;
    unsigned char  pad[72];
    size_t         npad;

    bits = ctx->bytes * 8;
    npad = (ctx->nbuf < 56) ? 56 - ctx->nbuf : 120 - ctx->nbuf;

    memset(pad, 0, sizeof(pad));
    pad[0] = 0x80;

    for (i = 0; i < 8; i++) {
        pad[npad + i] = (unsigned char) (bits >> (56 - 8 * i));
    }

    chathistory_sha256_update(ctx, pad, npad + 8);

    for (i = 0; i < 8; i++) {
        digest[4 * i] = (unsigned char) (ctx->state[i] >> 24);
        digest[4 * i + 1] = (unsigned char) (ctx->state[i] >> 16);
        digest[4 * i + 2] = (unsigned char) (ctx->state[i] >> 8);
        digest[4 * i + 3] = (unsigned char) ctx->state[i];
    }
}


void
chathistory_sha256(const void *data, size_t len,
    unsigned char digest[CHATHISTORY_SHA256_LEN])
{
    chathistory_sha256_t  ctx;

    chathistory_sha256_init(&ctx);
    chathistory_sha256_update(&ctx, data, len);
    chathistory_sha256_final(&ctx, digest);
}


static void
ch_sha256_block(uint32_t state[8], const unsigned char *p)
{
    int       i;
    uint32_t  w[64], a, b, c, d, e, f, g, h, s0, s1, t1, t2;

    for (i = 0; i < 16; i++) {
        w[i] = (uint32_t) p[4 * i] << 24 | (uint32_t) p[4 * i + 1] << 16
               | (uint32_t) p[4 * i + 2] << 8 | (uint32_t) p[4 * i + 3];
    }

    for (i = 16; i < 64; i++) {
        s0 = CH_ROTR(w[i - 15], 7) ^ CH_ROTR(w[i - 15], 18)
             ^ (w[i - 15] >> 3);
        s1 = CH_ROTR(w[i - 2], 17) ^ CH_ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }

    a = state[0]; b = state[1]; c = state[2]; d = state[3];
    e = state[4]; f = state[5]; g = state[6]; h = state[7];

    for (i = 0; i < 64; i++) {
        s1 = CH_ROTR(e, 6) ^ CH_ROTR(e, 11) ^ CH_ROTR(e, 25);
        t1 = h + s1 + ((e & f) ^ (~e & g)) + ch_sha256_k[i] + w[i];
        s0 = CH_ROTR(a, 2) ^ CH_ROTR(a, 13) ^ CH_ROTR(a, 22);
        t2 = s0 + ((a & b) ^ (a & c) ^ (b & c));

        h = g; g = f; f = e; e = d + t1;
        d = c; c = b; b = a; a = t1 + t2;
    }

    state[0] += a; state[1] += b; state[2] += c; state[3] += d;
    state[4] += e; state[5] += f; state[6] += g; state[7] += h;
}
