/*
 * encode.c — base64url and hex.
 *
 * The vault API carries every byte field as base64url without padding, but
 * clients differ: we accept padding, and '+'/'/' from clients that send
 * standard base64, while rejecting whitespace and any other character so
 * that a malformed field is a clear 400 rather than silently shortened input.
 */
#include "base.h"

#include <stdlib.h>
#include <string.h>

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

ck_err ck_b64url_encode(const uint8_t *p, size_t n, char **out)
{
    size_t len = n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
    char *s = ck_xmalloc(len + 1), *o = s;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = b64url_alphabet[v >> 18 & 63];
        *o++ = b64url_alphabet[v >> 12 & 63];
        *o++ = b64url_alphabet[v >> 6 & 63];
        *o++ = b64url_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *o++ = b64url_alphabet[v >> 18 & 63];
        *o++ = b64url_alphabet[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *o++ = b64url_alphabet[v >> 18 & 63];
        *o++ = b64url_alphabet[v >> 12 & 63];
        *o++ = b64url_alphabet[v >> 6 & 63];
    }
    *o = '\0';
    *out = s;
    return CK_OK;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-' || c == '+')
        return 62;
    if (c == '_' || c == '/')
        return 63;
    return -1;
}

/* Decodes into a caller-provided buffer of at least len*3/4+3 bytes. */
static ck_err b64_decode_into(const char *s, size_t len, uint8_t *out, size_t *outn)
{
    while (len > 0 && s[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return ck_err_set(CK_EINVAL, "invalid base64url: bad length");
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0)
            return ck_err_set(CK_EINVAL, "invalid base64url: unexpected character at offset %zu",
                              i);
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    *outn = o;
    return CK_OK;
}

ck_err ck_b64url_decode(const char *s, size_t len, struct ck_buf *out)
{
    struct ck_buf b;
    CK_TRY(ck_buf_alloc(&b, len / 4 * 3 + 3));
    ck_err rc = b64_decode_into(s, len, b.p, &b.n);
    if (rc != CK_OK) {
        ck_buf_free(&b);
        return rc;
    }
    *out = b;
    return CK_OK;
}

ck_err ck_b64url_decode_secret(const char *s, size_t len, struct ck_secret *out)
{
    struct ck_secret sec = {0};
    CK_TRY(ck_secret_alloc(&sec, len / 4 * 3 + 3));
    ck_err rc = b64_decode_into(s, len, sec.p, &sec.n);
    if (rc != CK_OK) {
        ck_secret_free(&sec);
        return rc;
    }
    *out = sec;
    return CK_OK;
}

void ck_hex_encode(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

int ck_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

ck_err ck_hex_decode(const char *s, struct ck_buf *out)
{
    size_t len = strlen(s);
    if (len % 2)
        return ck_err_set(CK_EINVAL, "invalid hex: odd length");
    struct ck_buf b;
    CK_TRY(ck_buf_alloc(&b, len / 2));
    for (size_t i = 0; i < len / 2; i++) {
        int hi = ck_hex_digit((unsigned char)s[2 * i]),
            lo = ck_hex_digit((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            ck_buf_free(&b);
            return ck_err_set(CK_EINVAL, "invalid hex: unexpected character");
        }
        b.p[i] = (uint8_t)(hi << 4 | lo);
    }
    *out = b;
    return CK_OK;
}
