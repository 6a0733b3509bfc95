/*
 * gp_int.h - helpers shared by the files of tsm/gp/ and nothing else:
 * error reporting, BER length reading, LV writing. Runs in tsmd.
 * Not a public header: only the .c files of tsm/gp include it.
 */
#ifndef SPTSM_GP_INT_H
#define SPTSM_GP_INT_H

#include "tsm/gp/gp.h"

/* Sets err (if any) to code and a formatted message; returns code. */
int gp_fail(struct gp_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* BER length at r (gpref: 00..7F, 81, 82, 83). ERR_PARSE for indefinite,
 * too long or (without GP_TLV_LAX_LENGTH) non-minimal forms; ERR_TRUNC if
 * the length bytes run out. Does not check the value against the buffer. */
int gp_ber_len_get(struct rd *r, size_t *len, unsigned flags,
    struct gp_err *err) WUR;

/* BER length then bytes. */
int gp_lv_put(struct buf *b, const uint8_t *p, size_t n) WUR;

/* Replaces out with the encoding of a. */
int gp_apdu_build(struct buf *out, uint8_t cla, uint8_t ins, uint8_t p1,
    uint8_t p2, const uint8_t *data, size_t lc, size_t ne,
    struct gp_err *err) WUR;

/* Two hex digits per byte into out (cap >= 2n+1), truncated with "..". */
const char *gp_hexstr(const uint8_t *p, size_t n, char *out, size_t cap);

#endif
