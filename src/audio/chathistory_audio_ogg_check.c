
/*
 * Validation of an uploaded Ogg Opus stream (RFC 3533, RFC 7845), without
 * decoding it: libogg frames the pages, checks their CRCs and sequence
 * numbers and assembles the packets.
 */


#include <stdlib.h>
#include <string.h>

#include <ogg/ogg.h>

#include "chathistory_audio_int.h"


#define CHA_OGG_FLAGS      0x07         /* continued, BOS, EOS */
#define CHA_OGG_NO_GRANULE ((uint64_t) -1)

/* fed to libogg a piece at a time: its buffer holds a piece and a page */
#define CHA_OGG_CHUNK      65536


typedef struct {
    ogg_sync_state        sync;
    ogg_stream_state      stream;
    uint32_t              serial;
    uint64_t              granule;      /* the last one set */
    size_t                pages;
    size_t                packetno;     /* packets completed */
    int                   partial;      /* a packet goes on to the next page */
    int                   eos;
} cha_ogg_t;


static int cha_ogg_page(cha_ogg_t *st, ogg_page *og, cha_ogg_info_t *info,
    char *err, size_t errlen);
static int cha_ogg_packet(cha_ogg_t *st, ogg_packet *op, cha_ogg_info_t *info,
    char *err, size_t errlen);
static int cha_ogg_opus_head(const unsigned char *p, size_t len,
    cha_ogg_info_t *info, char *err, size_t errlen);
static int cha_ogg_opus_tags(const unsigned char *p, size_t len, char *err,
    size_t errlen);


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
    char       *buf;
    size_t      pos, fed, n;
    ogg_page    og;
    cha_ogg_t   st;

    memset(info, 0, sizeof(cha_ogg_info_t));

    if (len < 4 || memcmp(p, "OggS", 4) != 0) {
        cha_error(err, errlen, "not an Ogg file");
        return -1;
    }

    memset(&st, 0, sizeof(cha_ogg_t));
    st.granule = CHA_OGG_NO_GRANULE;

    ogg_sync_init(&st.sync);

    if (ogg_stream_init(&st.stream, 0) != 0) {
        cha_error(err, errlen, "out of memory");
        ogg_sync_clear(&st.sync);
        return -1;
    }

    rc = -1;
    pos = 0;                            /* where the next page begins */
    fed = 0;

    for ( ;; ) {

        switch (ogg_sync_pageout(&st.sync, &og)) {

        case 1:
            if (cha_ogg_page(&st, &og, info, err, errlen) != 0) {
                goto done;
            }

            pos += og.header_len + og.body_len;

            if (st.eos && pos < len) {
                cha_error(err, errlen, "data after the end of the ogg stream");
                goto done;
            }

            continue;

        case -1:
            /* libogg skipped bytes: no page, or one whose CRC is wrong */
            if (memcmp(p + pos, "OggS", 4) != 0) {
                cha_error(err, errlen, "bad ogg capture pattern");

            } else {
                cha_error(err, errlen, "bad ogg page checksum");
            }

            goto done;

        default:
            break;
        }

        if (fed == len) {
            break;
        }

        n = len - fed < CHA_OGG_CHUNK ? len - fed : CHA_OGG_CHUNK;

        buf = ogg_sync_buffer(&st.sync, (long) n);
        if (buf == NULL) {
            cha_error(err, errlen, "out of memory");
            goto done;
        }

        memcpy(buf, p + fed, n);

        if (ogg_sync_wrote(&st.sync, (long) n) != 0) {
            cha_error(err, errlen, "out of memory");
            goto done;
        }

        fed += n;
    }

    if (pos < len) {
        cha_error(err, errlen, "truncated ogg page");
        goto done;
    }

    if (!st.eos || st.partial) {
        cha_error(err, errlen, "truncated ogg stream");
        goto done;
    }

    if (info->packets == 0) {
        cha_error(err, errlen, "no audio in ogg stream");
        goto done;
    }

    if (st.granule == CHA_OGG_NO_GRANULE || st.granule < info->pre_skip) {
        cha_error(err, errlen, "bad final granule position");
        goto done;
    }

    info->samples = st.granule - info->pre_skip;
    rc = 0;

done:

    ogg_stream_clear(&st.stream);
    ogg_sync_clear(&st.sync);

    return rc;
}


/* A page whose CRC libogg has checked: its header, then its packets. */
static int
cha_ogg_page(cha_ogg_t *st, ogg_page *og, cha_ogg_info_t *info, char *err,
    size_t errlen)
{
    int                   rc;
    size_t                start, nsegs;
    uint32_t              serial;
    uint64_t              granule;
    ogg_packet            op;

    if (ogg_page_version(og) != 0 || (og->header[5] & ~CHA_OGG_FLAGS) != 0) {
        cha_error(err, errlen, "bad ogg page header");
        return -1;
    }

    serial = (uint32_t) ogg_page_serialno(og);
    granule = (uint64_t) ogg_page_granulepos(og);

    if (st->pages++ == 0) {
        if (!ogg_page_bos(og)) {
            cha_error(err, errlen, "ogg stream does not begin");
            return -1;
        }

        /* any first sequence number: libogg checks those that follow */
        ogg_stream_reset_serialno(&st->stream, (int) serial);
        st->serial = serial;

    } else if (serial != st->serial) {
        cha_error(err, errlen, "several ogg streams");
        return -1;

    } else if (ogg_page_bos(og)) {
        cha_error(err, errlen, "bad ogg begin-of-stream flag");
        return -1;
    }

    if ((ogg_page_continued(og) != 0) != st->partial) {
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

    /* version and serial number are checked: only allocation fails here */
    if (ogg_stream_pagein(&st->stream, og) != 0) {
        cha_error(err, errlen, "out of memory");
        return -1;
    }

    for ( ;; ) {
        rc = ogg_stream_packetout(&st->stream, &op);

        if (rc == 0) {
            break;
        }

        if (rc < 0) {
            cha_error(err, errlen, "ogg page out of sequence");
            return -1;
        }

        if (cha_ogg_packet(st, &op, info, err, errlen) != 0) {
            return -1;
        }
    }

    /* a packet goes on when the last lacing value is 255 */
    nsegs = og->header[26];

    if (nsegs > 0) {
        st->partial = (og->header[27 + nsegs - 1] == 255);
    }

    /* OpusHead alone on the first page, OpusTags ending its last page */
    if ((start == 0 && (st->packetno != 1 || st->partial))
        || (start == 1 && (st->packetno > 2
                           || (st->packetno == 2 && st->partial))))
    {
        cha_error(err, errlen, "opus header not alone on its page");
        return -1;
    }

    if (ogg_page_eos(og)) {
        st->eos = 1;
    }

    return 0;
}


static int
cha_ogg_packet(cha_ogg_t *st, ogg_packet *op, cha_ogg_info_t *info,
    char *err, size_t errlen)
{
    int  rc;

    if (st->packetno == 0) {
        rc = cha_ogg_opus_head(op->packet, op->bytes, info, err, errlen);

    } else if (st->packetno == 1) {
        rc = cha_ogg_opus_tags(op->packet, op->bytes, err, errlen);

    } else if (op->bytes == 0) {
        cha_error(err, errlen, "empty opus packet");
        rc = -1;

    } else {
        info->packets++;
        rc = 0;
    }

    st->packetno++;

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
