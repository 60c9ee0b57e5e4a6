
/*
 * The "hash" embedder (embedding_model "hash-v1"): a model-free lexical
 * embedding shared by the nginx module (queries) and the worker (documents).
 * Plain C99, no allocation, no global state, deterministic on every platform.
 *
 * The algorithm, which both sides must follow exactly:
 *
 * 1. The text is read as UTF-8, one code point at a time. A byte that does
 *    not start a valid sequence (bad lead byte, bad continuation, overlong
 *    form, surrogate, above U+10FFFF) is a separator of one byte.
 * 2. Code points are folded to lower case: A-Z; U+00C0-U+00DE except U+00D7
 *    (+0x20); Greek U+0391-U+03AB except U+03A2 (+0x20); Cyrillic
 *    U+0410-U+042F (+0x20) and U+0400-U+040F (+0x50). Nothing else changes.
 * 3. A word is a maximal run of word code points: ASCII letters and digits,
 *    and every code point from U+0080 up except U+0080-U+00BF, U+00D7,
 *    U+00F7, U+2000-U+206F (general punctuation) and U+3000-U+303F (CJK
 *    punctuation). Everything else separates words.
 * 4. Each word gives these features, each hashed with 64-bit FNV-1a
 *    (offset basis 0xcbf29ce484222325, prime 0x100000001b3) over a kind byte
 *    followed by the UTF-8 bytes of the folded code points:
 *      - the word itself, kind byte 'w', weight 1.0;
 *      - every character trigram of "\x02" word "\x03" (the two markers are
 *        code points U+0002 and U+0003, so a word of n code points has n
 *        trigrams), kind byte 't', weight 0.5.
 * 5. A feature with hash h adds sign * weight to dimension h % 768, where
 *    sign is -1 when bit 63 of h is set and +1 otherwise.
 * 6. The vector is divided by its L2 norm (computed in double). A text with
 *    no word, or whose features cancel out, gives the unit vector of
 *    dimension 0.
 */


#ifndef _CHATHISTORY_HASH_EMBED_H_INCLUDED_
#define _CHATHISTORY_HASH_EMBED_H_INCLUDED_


#include <stddef.h>


#define CHATHISTORY_HASH_DIM    768
#define CHATHISTORY_HASH_MODEL  "hash-v1"


/*
 * Fills out[CHATHISTORY_HASH_DIM] with the embedding of text[0 .. len - 1];
 * returns the number of features (0: the fallback unit vector).
 */
size_t chathistory_hash_embed(const unsigned char *text, size_t len,
    float *out);


#endif /* _CHATHISTORY_HASH_EMBED_H_INCLUDED_ */
