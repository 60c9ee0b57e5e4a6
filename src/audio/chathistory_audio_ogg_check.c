
/*
 * Validation of an uploaded Ogg Opus stream (RFC 3533, RFC 7845), without
 * decoding it.
 */


#include <stdlib.h>
#include <string.h>

#include "chathistory_audio_int.h"


#define CHA_OGG_CONTINUED  0x01
#define CHA_OGG_BOS        0x02
#define CHA_OGG_EOS        0x04
#define CHA_OGG_HEADER     27
#define CHA_OGG_NO_GRANULE ((uint64_t) -1)


typedef struct {
    uint32_t              crc[256];
    uint32_t              serial;
    uint64_t              granule;      /* the last one set */
    size_t                pages;
    size_t                packetno;     /* packets completed */
    size_t                plen;         /* of the packet being assembled */
    unsigned char        *head;         /* OpusHead, then OpusTags */
    size_t                head_len;
    int                   eos;
} cha_ogg_t;


static int cha_ogg_page(cha_ogg_t *st, const unsigned char *p, size_t len,
    size_t *page_len, cha_ogg_info_t *info, char *err, size_t errlen);
static int cha_ogg_segment(cha_ogg_t *st, const unsigned char *p, size_t n,
    int complete, cha_ogg_info_t *info, char *err, size_t errlen);
static int cha_ogg_opus_head(const unsigned char *p, size_t len,
    cha_ogg_info_t *info, char *err, size_t errlen);
static int cha_ogg_opus_tags(const unsigned char *p, size_t len, char *err,
    size_t errlen);
static void cha_ogg_crc_table(uint32_t *table);
static uint32_t cha_ogg_crc(const uint32_t *table, uint32_t crc,
    const unsigned char *p, size_t len);


static uint32_t
cha_le32(const unsigned char *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16
           | (uint32_t) p[3] << 24;
}


/*
 * The whole body must be pages of one logical stream: OpusHead alone on the
 * first page, OpusTags ending its page, at least one audio packet, and an
 * end-of-stream page whose granule position gives the duration.
 */
int
cha_ogg_check(const unsigned char *p, size_t len, cha_ogg_info_t *info,
    char *err, size_t errlen)
{
    int         rc;
    size_t      pos, page_len;
    cha_ogg_t  *st;

    memset(info, 0, sizeof(cha_ogg_info_t));

    if (len < 4 || memcmp(p, "OggS", 4) != 0) {
        cha_error(err, errlen, "not an Ogg file");
        return -1;
    }

    /* about 1 KB of table: kept off the stack of a thread pool task */
    st = calloc(1, sizeof(cha_ogg_t));
    if (st == NULL) {
        cha_error(err, errlen, "out of memory");
        return -1;
    }

    cha_ogg_crc_table(st->crc);
    st->granule = CHA_OGG_NO_GRANULE;
    rc = -1;

    for (pos = 0; pos < len; pos += page_len) {
        if (st->eos) {
            cha_error(err, errlen, "data after the end of the ogg stream");
            goto done;
        }

        if (cha_ogg_page(st, p + pos, len - pos, &page_len, info, err, errlen)
            != 0)
        {
            goto done;
        }
    }

    if (!st->eos || st->plen > 0) {
        cha_error(err, errlen, "truncated ogg stream");
        goto done;
    }

    if (info->packets == 0) {
        cha_error(err, errlen, "no audio in ogg stream");
        goto done;
    }

    if (st->granule == CHA_OGG_NO_GRANULE || st->granule < info->pre_skip) {
        cha_error(err, errlen, "bad final granule position");
        goto done;
    }

    info->samples = st->granule - info->pre_skip;
    rc = 0;

done:

    free(st->head);
    free(st);

    return rc;
}


static int
cha_ogg_page(cha_ogg_t *st, const unsigned char *p, size_t len,
    size_t *page_len, cha_ogg_info_t *info, char *err, size_t errlen)
{
    int                   flags;
    size_t                i, nsegs, body, n, start;
    uint32_t              crc, serial;
    uint64_t              granule;
    const unsigned char  *lacing, *data;
    static const unsigned char  zero[4];

    if (len < CHA_OGG_HEADER) {
        cha_error(err, errlen, "truncated ogg page");
        return -1;
    }

    if (memcmp(p, "OggS", 4) != 0) {
        cha_error(err, errlen, "bad ogg capture pattern");
        return -1;
    }

    if (p[4] != 0 || (p[5] & ~7) != 0) {
        cha_error(err, errlen, "bad ogg page header");
        return -1;
    }

    flags = p[5];
    nsegs = p[26];

    if (len < CHA_OGG_HEADER + nsegs) {
        cha_error(err, errlen, "truncated ogg page");
        return -1;
    }

    lacing = p + CHA_OGG_HEADER;
    body = 0;

    for (i = 0; i < nsegs; i++) {
        body += lacing[i];
    }

    *page_len = CHA_OGG_HEADER + nsegs + body;

    if (len < *page_len) {
        cha_error(err, errlen, "truncated ogg page");
        return -1;
    }

    crc = cha_ogg_crc(st->crc, 0, p, 22);
    crc = cha_ogg_crc(st->crc, crc, zero, 4);
    crc = cha_ogg_crc(st->crc, crc, p + 26, *page_len - 26);

    if (crc != cha_le32(p + 22)) {
        cha_error(err, errlen, "bad ogg page checksum");
        return -1;
    }

    serial = cha_le32(p + 14);
    granule = (uint64_t) cha_le32(p + 6) | (uint64_t) cha_le32(p + 10) << 32;

    if (st->pages++ == 0) {
        if (!(flags & CHA_OGG_BOS)) {
            cha_error(err, errlen, "ogg stream does not begin");
            return -1;
        }

        st->serial = serial;

    } else if (serial != st->serial) {
        cha_error(err, errlen, "several ogg streams");
        return -1;

    } else if (flags & CHA_OGG_BOS) {
        cha_error(err, errlen, "bad ogg begin-of-stream flag");
        return -1;
    }

    if (((flags & CHA_OGG_CONTINUED) != 0) != (st->plen > 0)) {
        cha_error(err, errlen, "bad ogg continuation");
        return -1;
    }

    /* header pages carry no granule position */
    start = st->packetno;

    if (start < 2) {
        if (granule != 0 && granule != CHA_OGG_NO_GRANULE) {
            cha_error(err, errlen, "bad granule position on a header page");
            return -1;
        }

    } else if (granule != CHA_OGG_NO_GRANULE) {
        if (st->granule != CHA_OGG_NO_GRANULE && granule < st->granule) {
            cha_error(err, errlen, "ogg granule position goes backwards");
            return -1;
        }

        st->granule = granule;
    }

    data = lacing + nsegs;

    for (i = 0; i < nsegs; data += n, i++) {
        n = lacing[i];

        if (cha_ogg_segment(st, data, n, n < 255, info, err, errlen) != 0) {
            return -1;
        }
    }

    /* OpusHead alone on the first page, OpusTags ending its last page */
    if ((start == 0 && (st->packetno != 1 || st->plen > 0))
        || (start == 1 && (st->packetno > 2
                           || (st->packetno == 2 && st->plen > 0))))
    {
        cha_error(err, errlen, "opus header not alone on its page");
        return -1;
    }

    if (flags & CHA_OGG_EOS) {
        st->eos = 1;
    }

    return 0;
}


/* Adds a segment to the packet being assembled; headers are kept whole. */
static int
cha_ogg_segment(cha_ogg_t *st, const unsigned char *p, size_t n, int complete,
    cha_ogg_info_t *info, char *err, size_t errlen)
{
    int             rc;
    unsigned char  *head;

    if (st->packetno < 2) {
        head = realloc(st->head, st->head_len + n + 1);
        if (head == NULL) {
            cha_error(err, errlen, "out of memory");
            return -1;
        }

        memcpy(head + st->head_len, p, n);
        st->head = head;
        st->head_len += n;
    }

    st->plen += n;

    if (!complete) {
        return 0;
    }

    if (st->packetno == 0) {
        rc = cha_ogg_opus_head(st->head, st->head_len, info, err, errlen);

    } else if (st->packetno == 1) {
        rc = cha_ogg_opus_tags(st->head, st->head_len, err, errlen);

    } else if (st->plen == 0) {
        cha_error(err, errlen, "empty opus packet");
        rc = -1;

    } else {
        info->packets++;
        rc = 0;
    }

    st->packetno++;
    st->plen = 0;
    st->head_len = 0;

    return rc;
}


static int
cha_ogg_opus_head(const unsigned char *p, size_t len, cha_ogg_info_t *info,
    char *err, size_t errlen)
{
    unsigned  family;

    if (len < 19 || memcmp(p, "OpusHead", 8) != 0) {
        cha_error(err, errlen, "not an Ogg Opus stream");
        return -1;
    }

    if (p[8] == 0 || p[8] > 15) {
        cha_error(err, errlen, "unsupported OpusHead version %u", p[8]);
        return -1;
    }

    info->channels = p[9];
    info->pre_skip = (unsigned) p[10] | (unsigned) p[11] << 8;
    info->input_rate = cha_le32(p + 12);
    family = p[18];

    if (family == 0 && info->channels >= 1 && info->channels <= 2) {
        return 0;
    }

    if (family == 1 && info->channels >= 1 && info->channels <= 8
        && len >= 21 + (size_t) info->channels)
    {
        return 0;
    }

    cha_error(err, errlen, "unsupported opus channels %u (mapping family %u)",
              info->channels, family);
    return -1;
}


static int
cha_ogg_opus_tags(const unsigned char *p, size_t len, char *err,
    size_t errlen)
{
    size_t    pos, n, count, i;

    if (len < 16 || memcmp(p, "OpusTags", 8) != 0) {
        cha_error(err, errlen, "missing OpusTags");
        return -1;
    }

    n = cha_le32(p + 8);
    pos = 12;

    if (n > len - pos || len - pos - n < 4) {
        cha_error(err, errlen, "bad OpusTags");
        return -1;
    }

    pos += n;
    count = cha_le32(p + pos);
    pos += 4;

    for (i = 0; i < count; i++) {
        if (len - pos < 4) {
            cha_error(err, errlen, "bad OpusTags");
            return -1;
        }

        n = cha_le32(p + pos);
        pos += 4;

        if (n > len - pos) {
            cha_error(err, errlen, "bad OpusTags");
            return -1;
        }

        pos += n;
    }

    return 0;
}


/* CRC-32, polynomial 0x04c11db7, no reflection, as Ogg uses */
static void
cha_ogg_crc_table(uint32_t *table)
{
    int       k;
    uint32_t  i, r;

    for (i = 0; i < 256; i++) {
        r = i << 24;

        for (k = 0; k < 8; k++) {
            r = (r & 0x80000000) ? (r << 1) ^ 0x04c11db7 : r << 1;
        }

        table[i] = r;
    }
}


static uint32_t
cha_ogg_crc(const uint32_t *table, uint32_t crc, const unsigned char *p,
    size_t len)
{
    while (len--) {
        crc = (crc << 8) ^ table[((crc >> 24) ^ *p++) & 0xff];
    }

    return crc;
}
