
/*
 * The "hash" embedder: feature hashing of words and character trigrams.
 * The algorithm is specified in chathistory_hash_embed.h.
 */


#include <math.h>
#include <stdint.h>
#include <string.h>

#include "chathistory_hash_embed.h"


#define CH_FNV_BASIS   UINT64_C(0xcbf29ce484222325)
#define CH_FNV_PRIME   UINT64_C(0x100000001b3)
#define CH_BAD         0xffffffffu
#define CH_BEGIN       0x02u
#define CH_END         0x03u


typedef struct {
    float     *vec;
    double     acc[CHATHISTORY_HASH_DIM];
    uint32_t   win[2];         /* the two code points before the current */
    size_t     nwin;
    uint64_t   word;           /* FNV-1a of 'w' and the word so far */
    size_t     nfeatures;
} ch_hash_state_t;


static uint32_t ch_hash_decode(const unsigned char *p, size_t len,
    size_t *used);
static uint32_t ch_hash_fold(uint32_t cp);
static int ch_hash_is_word(uint32_t cp);
static uint64_t ch_hash_cp(uint64_t h, uint32_t cp);
static void ch_hash_add(ch_hash_state_t *st, uint64_t h, double weight);
static void ch_hash_char(ch_hash_state_t *st, uint32_t cp);
static void ch_hash_word_end(ch_hash_state_t *st);
static void ch_hash_normalize(ch_hash_state_t *st);


size_t
chathistory_hash_embed(const unsigned char *text, size_t len, float *out)
{
    size_t           i, used;
    uint32_t         cp;
    ch_hash_state_t  st;

    memset(&st, 0, sizeof(ch_hash_state_t));
    st.vec = out;

    for (i = 0; i < len; i += used) {
        cp = ch_hash_decode(text + i, len - i, &used);

        if (cp != CH_BAD) {
            cp = ch_hash_fold(cp);
        }

        if (cp != CH_BAD && ch_hash_is_word(cp)) {
            ch_hash_char(&st, cp);

        } else if (st.nwin > 0) {
            ch_hash_word_end(&st);
        }
    }

    if (st.nwin > 0) {
        ch_hash_word_end(&st);
    }

    ch_hash_normalize(&st);

    return st.nfeatures;
}


/* one code point of a word: extends the word hash, emits a trigram */
static void
ch_hash_char(ch_hash_state_t *st, uint32_t cp)
{
    uint64_t  h;

    if (st->nwin == 0) {
        st->word = (CH_FNV_BASIS ^ (unsigned char) 'w') * CH_FNV_PRIME;
        st->win[0] = 0;
        st->win[1] = CH_BEGIN;
        st->nwin = 1;
    }

    st->word = ch_hash_cp(st->word, cp);

    if (st->nwin >= 2) {
        h = (CH_FNV_BASIS ^ (unsigned char) 't') * CH_FNV_PRIME;
        h = ch_hash_cp(h, st->win[0]);
        h = ch_hash_cp(h, st->win[1]);
        h = ch_hash_cp(h, cp);
        ch_hash_add(st, h, 0.5);
    }

    st->win[0] = st->win[1];
    st->win[1] = cp;
    st->nwin++;
}


/* the word feature and the last trigram, the one with the end marker */
static void
ch_hash_word_end(ch_hash_state_t *st)
{
    uint64_t  h;

    ch_hash_add(st, st->word, 1.0);

    h = (CH_FNV_BASIS ^ (unsigned char) 't') * CH_FNV_PRIME;
    h = ch_hash_cp(h, st->win[0]);
    h = ch_hash_cp(h, st->win[1]);
    h = ch_hash_cp(h, CH_END);
    ch_hash_add(st, h, 0.5);

    st->nwin = 0;
}


static void
ch_hash_add(ch_hash_state_t *st, uint64_t h, double weight)
{
    st->acc[h % CHATHISTORY_HASH_DIM] += (h >> 63) ? -weight : weight;
    st->nfeatures++;
}


static void
ch_hash_normalize(ch_hash_state_t *st)
{
    size_t  i;
    double  norm;

    norm = 0.0;

    for (i = 0; i < CHATHISTORY_HASH_DIM; i++) {
        norm += st->acc[i] * st->acc[i];
    }

    norm = sqrt(norm);

    for (i = 0; i < CHATHISTORY_HASH_DIM; i++) {
        st->vec[i] = norm > 0.0 ? (float) (st->acc[i] / norm) : 0.0f;
    }

    if (norm == 0.0) {
        st->vec[0] = 1.0f;
    }
}


/* FNV-1a over the UTF-8 encoding of cp */
static uint64_t
ch_hash_cp(uint64_t h, uint32_t cp)
{
    size_t         i, n;
    unsigned char  b[4];

    if (cp < 0x80) {
        b[0] = (unsigned char) cp;
        n = 1;

    } else if (cp < 0x800) {
        b[0] = (unsigned char) (0xc0 | (cp >> 6));
        b[1] = (unsigned char) (0x80 | (cp & 0x3f));
        n = 2;

    } else if (cp < 0x10000) {
        b[0] = (unsigned char) (0xe0 | (cp >> 12));
        b[1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
        b[2] = (unsigned char) (0x80 | (cp & 0x3f));
        n = 3;

    } else {
        b[0] = (unsigned char) (0xf0 | (cp >> 18));
        b[1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3f));
        b[2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
        b[3] = (unsigned char) (0x80 | (cp & 0x3f));
        n = 4;
    }

    for (i = 0; i < n; i++) {
        h = (h ^ b[i]) * CH_FNV_PRIME;
    }

    return h;
}


/* the code point at p, or CH_BAD for one invalid byte (*used = 1) */
static uint32_t
ch_hash_decode(const unsigned char *p, size_t len, size_t *used)
{
    size_t    i, n;
    uint32_t  cp, min;

    *used = 1;

    if (p[0] < 0x80) {
        return p[0];
    }

    if ((p[0] & 0xe0) == 0xc0) {
        n = 2; cp = p[0] & 0x1f; min = 0x80;

    } else if ((p[0] & 0xf0) == 0xe0) {
        n = 3; cp = p[0] & 0x0f; min = 0x800;

    } else if ((p[0] & 0xf8) == 0xf0) {
        n = 4; cp = p[0] & 0x07; min = 0x10000;

    } else {
        return CH_BAD;
    }

    if (len < n) {
        return CH_BAD;
    }

    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return CH_BAD;
        }

        cp = (cp << 6) | (p[i] & 0x3f);
    }

    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return CH_BAD;
    }

    *used = n;

    return cp;
}


static uint32_t
ch_hash_fold(uint32_t cp)
{
    if ((cp >= 'A' && cp <= 'Z')
        || (cp >= 0xc0 && cp <= 0xde && cp != 0xd7)
        || (cp >= 0x391 && cp <= 0x3ab && cp != 0x3a2)
        || (cp >= 0x410 && cp <= 0x42f))
    {
        return cp + 0x20;
    }

    if (cp >= 0x400 && cp <= 0x40f) {
        return cp + 0x50;
    }

    return cp;
}


static int
ch_hash_is_word(uint32_t cp)
{
    if (cp < 0x80) {
        return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')
               || (cp >= '0' && cp <= '9');
    }

    return !(cp <= 0xbf || cp == 0xd7 || cp == 0xf7
             || (cp >= 0x2000 && cp <= 0x206f)
             || (cp >= 0x3000 && cp <= 0x303f));
}
