
/*
 * Opus encoding in 20 ms frames, written as an Ogg Opus stream (RFC 7845).
 */


#include <stdlib.h>
#include <string.h>

#include <ogg/ogg.h>
#include <opus/opus.h>

#include "chathistory_audio_int.h"


#define CHA_MAX_PACKET   1275       /* one 20 ms frame, RFC 6716 */
#define CHA_PAGE_SPAN    48000      /* flush pages at least every second */


struct cha_opus_enc_s {
    OpusEncoder          *enc;
    ogg_stream_state      os;
    unsigned              rate;
    unsigned              channels;
    unsigned              frame;        /* samples per frame at rate */
    unsigned              scale;        /* 48000 / rate */
    unsigned              pre_skip;     /* 48 kHz */
    unsigned              buffered;     /* frames waiting in pcm */
    int64_t               packetno;
    uint64_t              granule;      /* 48 kHz, samples encoded */
    uint64_t              page_start;
    float                *pcm;
    unsigned char        *packet;       /* the encoder's output */
    unsigned char        *held;         /* the packet before, not yet sent */
    size_t                held_len;
    uint64_t              held_granule;
    int                   holding;
    unsigned char        *data;         /* the Ogg file so far */
    size_t                len;
    size_t                size;
};


static int cha_opus_headers(cha_opus_enc_t *e, unsigned input_rate,
    const char *comment);
static int cha_opus_packet(cha_opus_enc_t *e, unsigned char *p, size_t len,
    uint64_t granule, int eos);
static int cha_opus_encode(cha_opus_enc_t *e, char *err, size_t errlen);
static int cha_opus_pages(cha_opus_enc_t *e, int flush);
static int cha_opus_append(cha_opus_enc_t *e, const unsigned char *p,
    size_t len);
static void cha_put32(unsigned char *p, uint32_t v);


cha_opus_enc_t *
cha_opus_create(unsigned rate, unsigned channels, unsigned input_rate,
    const chathistory_audio_opts_t *opts, uint32_t serial, char *err,
    size_t errlen)
{
    int              rc;
    opus_int32       lookahead;
    cha_opus_enc_t  *e;

    e = calloc(1, sizeof(cha_opus_enc_t));
    if (e == NULL) {
        cha_error(err, errlen, "out of memory");
        return NULL;
    }

    e->rate = rate;
    e->channels = channels;
    e->frame = rate / 1000 * CHA_FRAME_MS;
    e->scale = CHA_OPUS_RATE / rate;

    if (ogg_stream_init(&e->os, (int) serial) != 0) {
        free(e);
        cha_error(err, errlen, "out of memory");
        return NULL;
    }

    e->pcm = malloc(sizeof(float) * e->frame * channels);
    e->packet = malloc(CHA_MAX_PACKET);
    e->held = malloc(CHA_MAX_PACKET);

    if (e->pcm == NULL || e->packet == NULL || e->held == NULL) {
        cha_error(err, errlen, "out of memory");
        goto failed;
    }

    e->enc = opus_encoder_create((opus_int32) rate, (int) channels,
                                 OPUS_APPLICATION_VOIP, &rc);
    if (e->enc == NULL) {
        cha_error(err, errlen, "opus: %s", opus_strerror(rc));
        goto failed;
    }

    if (opus_encoder_ctl(e->enc, OPUS_SET_BITRATE(opts->bitrate)) != OPUS_OK
        || opus_encoder_ctl(e->enc, OPUS_SET_COMPLEXITY(opts->complexity))
           != OPUS_OK
        || opus_encoder_ctl(e->enc, OPUS_SET_SIGNAL(OPUS_SIGNAL_VOICE))
           != OPUS_OK
        || opus_encoder_ctl(e->enc, OPUS_GET_LOOKAHEAD(&lookahead)) != OPUS_OK)
    {
        cha_error(err, errlen, "opus: cannot configure the encoder");
        goto failed;
    }

    /* granule positions count decoded samples, the pre-skip among them */
    e->pre_skip = (unsigned) lookahead * e->scale;

    if (cha_opus_headers(e, input_rate, opts->comment) != 0) {
        cha_error(err, errlen, "out of memory");
        goto failed;
    }

    return e;

failed:

    cha_opus_destroy(e);
    return NULL;
}


/* OpusHead and OpusTags, each closing its own page (RFC 7845, 5). */
static int
cha_opus_headers(cha_opus_enc_t *e, unsigned input_rate, const char *comment)
{
    int                   rc;
    size_t                vlen, clen, len;
    const char           *vendor;
    unsigned char         head[19], *tags, *p;

    memcpy(head, "OpusHead", 8);
    head[8] = 1;
    head[9] = (unsigned char) e->channels;
    head[10] = (unsigned char) (e->pre_skip & 0xff);
    head[11] = (unsigned char) (e->pre_skip >> 8);
    cha_put32(head + 12, input_rate);
    head[16] = 0;                       /* output gain */
    head[17] = 0;
    head[18] = 0;                       /* mapping family */

    if (cha_opus_packet(e, head, sizeof(head), 0, 0) != 0
        || cha_opus_pages(e, 1) != 0)
    {
        return -1;
    }

    vendor = opus_get_version_string();
    vlen = strlen(vendor);
    clen = (comment != NULL) ? strlen(comment) : 0;
    len = 8 + 4 + vlen + 4 + (clen ? 4 + clen : 0);

    tags = malloc(len);
    if (tags == NULL) {
        return -1;
    }

    p = tags;
    memcpy(p, "OpusTags", 8);
    cha_put32(p + 8, (uint32_t) vlen);
    memcpy(p + 12, vendor, vlen);
    p += 12 + vlen;
    cha_put32(p, clen ? 1 : 0);

    if (clen) {
        cha_put32(p + 4, (uint32_t) clen);
        memcpy(p + 8, comment, clen);
    }

    rc = cha_opus_packet(e, tags, len, 0, 0);
    free(tags);

    if (rc != 0) {
        return -1;
    }

    return cha_opus_pages(e, 1);
}


/* Takes interleaved float frames at the encoder's rate. */
int
cha_opus_write(cha_opus_enc_t *e, const float *pcm, size_t frames, char *err,
    size_t errlen)
{
    size_t  n;

    while (frames > 0) {
        n = e->frame - e->buffered;

        if (n > frames) {
            n = frames;
        }

        memcpy(e->pcm + (size_t) e->buffered * e->channels, pcm,
               sizeof(float) * n * e->channels);

        e->buffered += (unsigned) n;
        pcm += n * e->channels;
        frames -= n;

        if (e->buffered == e->frame && cha_opus_encode(e, err, errlen) != 0) {
            return -1;
        }
    }

    return 0;
}


/*
 * Pads with silence until the decoder, after the pre-skip, has samples48
 * samples, and ends the stream with a granule position of exactly that: the
 * last packet is held back until then to be sent with it.
 */
int
cha_opus_finish(cha_opus_enc_t *e, uint64_t samples48,
    chathistory_audio_out_t *out, char *err, size_t errlen)
{
    uint64_t  end;

    end = e->pre_skip + samples48;

    while (e->granule < end) {
        memset(e->pcm + (size_t) e->buffered * e->channels, 0,
               sizeof(float) * (e->frame - e->buffered) * e->channels);
        e->buffered = e->frame;

        if (cha_opus_encode(e, err, errlen) != 0) {
            return -1;
        }
    }

    if (!e->holding
        || cha_opus_packet(e, e->held, e->held_len, end, 1) != 0
        || cha_opus_pages(e, 1) != 0)
    {
        cha_error(err, errlen, "cannot finish the ogg stream");
        return -1;
    }

    out->data = e->data;
    out->len = e->len;
    e->data = NULL;

    return 0;
}


/* Encodes the buffered frame and sends the packet held before it. */
static int
cha_opus_encode(cha_opus_enc_t *e, char *err, size_t errlen)
{
    opus_int32      n;
    unsigned char  *p;

    n = opus_encode_float(e->enc, e->pcm, (int) e->frame, e->packet,
                          CHA_MAX_PACKET);
    if (n < 0) {
        cha_error(err, errlen, "opus: %s", opus_strerror(n));
        return -1;
    }

    e->buffered = 0;

    if (e->holding
        && (cha_opus_packet(e, e->held, e->held_len, e->held_granule, 0) != 0
            || cha_opus_pages(e, e->granule - e->page_start >= CHA_PAGE_SPAN)
               != 0))
    {
        cha_error(err, errlen, "out of memory");
        return -1;
    }

    p = e->held;
    e->held = e->packet;
    e->packet = p;
    e->held_len = (size_t) n;
    e->granule += e->frame * e->scale;
    e->held_granule = e->granule;
    e->holding = 1;

    return 0;
}


static int
cha_opus_packet(cha_opus_enc_t *e, unsigned char *p, size_t len,
    uint64_t granule, int eos)
{
    ogg_packet  op;

    op.packet = p;
    op.bytes = (long) len;
    op.b_o_s = (e->packetno == 0);
    op.e_o_s = eos;
    op.granulepos = (ogg_int64_t) granule;
    op.packetno = e->packetno++;

    return ogg_stream_packetin(&e->os, &op) == 0 ? 0 : -1;
}


/* Moves finished pages (all pages when flushing) to the output. */
static int
cha_opus_pages(cha_opus_enc_t *e, int flush)
{
    int        rc;
    ogg_page   og;

    for ( ;; ) {
        rc = flush ? ogg_stream_flush(&e->os, &og)
                   : ogg_stream_pageout(&e->os, &og);
        if (rc == 0) {
            break;
        }

        if (cha_opus_append(e, og.header, (size_t) og.header_len) != 0
            || cha_opus_append(e, og.body, (size_t) og.body_len) != 0)
        {
            return -1;
        }

        e->page_start = e->granule;
    }

    return ogg_stream_check(&e->os) == 0 ? 0 : -1;
}


static int
cha_opus_append(cha_opus_enc_t *e, const unsigned char *p, size_t len)
{
    size_t          size;
    unsigned char  *data;

    if (e->len + len > e->size) {
        size = e->size ? e->size * 2 : 16384;

        while (size < e->len + len) {
            size *= 2;
        }

        data = realloc(e->data, size);
        if (data == NULL) {
            return -1;
        }

        e->data = data;
        e->size = size;
    }

    memcpy(e->data + e->len, p, len);
    e->len += len;

    return 0;
}


void
cha_opus_destroy(cha_opus_enc_t *e)
{
    if (e == NULL) {
        return;
    }

    if (e->enc != NULL) {
        opus_encoder_destroy(e->enc);
    }

    ogg_stream_clear(&e->os);
    free(e->pcm);
    free(e->packet);
    free(e->held);
    free(e->data);
    free(e);
}


static void
cha_put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char) v;
    p[1] = (unsigned char) (v >> 8);
    p[2] = (unsigned char) (v >> 16);
    p[3] = (unsigned char) (v >> 24);
}
