/*
 * tap.h - a minimal Test Anything Protocol emitter for the C unit and
 * integration tests. `make check` runs every test binary under prove.
 * Header-only; include it from exactly one file per test binary.
 */
#ifndef SPTSM_TAP_H
#define SPTSM_TAP_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_n, tap_failed;

static void tap_vline(int ok, const char *fmt, va_list ap)
{
	tap_n++;
	if (!ok)
		tap_failed++;
	printf("%sok %d - ", ok ? "" : "not ", tap_n);
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
}

static int __attribute__((format(printf, 2, 3), unused))
ok(int cond, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tap_vline(cond, fmt, ap);
	va_end(ap);
	return cond;
}

static void __attribute__((format(printf, 1, 2), unused))
diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static void __attribute__((format(printf, 1, 2), unused))
skip(const char *fmt, ...)
{
	va_list ap;

	tap_n++;
	printf("ok %d # SKIP ", tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static int __attribute__((format(printf, 3, 4), unused))
is_int(long got, long want, const char *fmt, ...)
{
	va_list ap;
	int r = got == want;

	va_start(ap, fmt);
	tap_vline(r, fmt, ap);
	va_end(ap);
	if (!r)
		diag("  got %ld, want %ld", got, want);
	return r;
}

/* Compares bytes with an expected hex string (either case). */
static int __attribute__((format(printf, 4, 5), unused))
is_hex(const uint8_t *got, size_t n, const char *want, const char *fmt, ...)
{
	static const char hx[] = "0123456789abcdef";
	char *g = malloc(2 * n + 1);
	size_t i, wl = strlen(want);
	int r;
	va_list ap;

	if (g == NULL)
		abort();
	for (i = 0; i < n; i++) {
		g[2 * i] = hx[got[i] >> 4];
		g[2 * i + 1] = hx[got[i] & 15];
	}
	g[2 * n] = 0;
	r = wl == 2 * n;
	for (i = 0; r && i < wl; i++) {
		char c = want[i];
		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		r = c == g[i];
	}
	va_start(ap, fmt);
	tap_vline(r, fmt, ap);
	va_end(ap);
	if (!r)
		diag("  got  %s\n#   want %s", g, want);
	free(g);
	return r;
}

static int __attribute__((unused))
done_testing(void)
{
	printf("1..%d\n", tap_n);
	if (tap_failed)
		diag("failed %d of %d", tap_failed, tap_n);
	return tap_failed ? 1 : 0;
}

/* Abort the whole test program with a Bail out! line (setup failures). */
static void __attribute__((noreturn, format(printf, 1, 2), unused))
bail(const char *fmt, ...)
{
	va_list ap;

	printf("Bail out! ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(255);
}

#endif
