
/*
 * Fuzz target: validation of an uploaded Ogg Opus stream.  Mutated pages
 * almost never keep a good CRC, so when the input's first byte is odd the
 * target rewrites each complete page's checksum before the check: the
 * mutations then reach the page and packet logic behind it.
 */


#include <string.h>

#include "harness.h"
#include "chathistory_audio_int.h"


#define FUZZ_OGG_HEADER  27


static void fuzz_ogg_fix_crcs(u_char *p, size_t len);
static uint32_t fuzz_ogg_crc(const u_char *p, size_t len);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int              rc;
    char             err[128];
    u_char          *copy;
    cha_ogg_info_t   info;

    if (size < 1) {
        return 0;
    }

    copy = malloc(size - 1 + 1);
    harness_check(copy != NULL);
    memcpy(copy, data + 1, size - 1);

    if (data[0] & 1) {
        fuzz_ogg_fix_crcs(copy, size - 1);
    }

    err[0] = '\0';

    rc = cha_ogg_check(copy, size - 1, &info, err, sizeof(err));

    if (rc != 0) {
        harness_check(err[0] != '\0');

    } else {
        harness_check(info.channels >= 1 && info.channels <= CHA_MAX_CHANNELS);
        harness_check(info.packets > 0);
    }

    free(copy);

    return 0;
}


static void
fuzz_ogg_fix_crcs(u_char *p, size_t len)
{
    size_t    pos, nsegs, page, i;
    uint32_t  crc;

    for (pos = 0; len - pos >= FUZZ_OGG_HEADER; pos += page) {
        if (memcmp(p + pos, "OggS", 4) != 0) {
            return;
        }

        nsegs = p[pos + 26];

        if (len - pos < FUZZ_OGG_HEADER + nsegs) {
            return;
        }

        page = FUZZ_OGG_HEADER + nsegs;

        for (i = 0; i < nsegs; i++) {
            page += p[pos + FUZZ_OGG_HEADER + i];
        }

        if (len - pos < page) {
            return;
        }

        memset(p + pos + 22, 0, 4);
        crc = fuzz_ogg_crc(p + pos, page);

        p[pos + 22] = (u_char) crc;
        p[pos + 23] = (u_char) (crc >> 8);
        p[pos + 24] = (u_char) (crc >> 16);
        p[pos + 25] = (u_char) (crc >> 24);
    }
}


/* Ogg's CRC-32 (polynomial 0x04c11db7, MSB first), bit by bit: slow, plain */
static uint32_t
fuzz_ogg_crc(const u_char *p, size_t len)
{
    int       k;
    uint32_t  crc;

    crc = 0;

    while (len--) {
        crc ^= (uint32_t) *p++ << 24;

        for (k = 0; k < 8; k++) {
            crc = (crc & 0x80000000) ? (crc << 1) ^ 0x04c11db7 : crc << 1;
        }
    }

    return crc;
}
