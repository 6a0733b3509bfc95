/*
 * driver.c - runs a libFuzzer target without libFuzzer, as a TAP test:
 * every file of tests/fuzz/corpus/<target>/ and then a fixed number of
 * deterministic mutations (bit flips, truncations, insertions, random
 * bytes) of each seed. `make fuzz` links the same targets with libFuzzer
 * instead. A crash or sanitizer report fails the test.
 */
#include <dirent.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t
next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)rng;
}

static void
run(const uint8_t *p, size_t n)
{
	/* Copy so the target sees an exact-size heap block (ASan catches
	 * overreads by one). */
	uint8_t *c = malloc(n ? n : 1);

	if (c == NULL)
		abort();
	memcpy(c, p, n);
	LLVMFuzzerTestOneInput(c, n);
	free(c);
}

static void
mutate_and_run(const uint8_t *seed, size_t n, int rounds)
{
	uint8_t *m = malloc(n + 64);
	size_t len, i, pos;
	int r;

	if (m == NULL)
		abort();
	for (r = 0; r < rounds; r++) {
		memcpy(m, seed, n);
		len = n;
		switch (next() % 5) {
		case 0:	/* bit flips */
			for (i = 0; i < 1 + next() % 4 && len; i++)
				m[next() % len] ^= (uint8_t)(1u << (next() % 8));
			break;
		case 1:	/* truncate */
			len = len ? next() % len : 0;
			break;
		case 2:	/* insert random bytes */
			pos = len ? next() % (len + 1) : 0;
			i = 1 + next() % 16;
			memmove(m + pos + i, m + pos, len - pos);
			for (size_t k = 0; k < i; k++)
				m[pos + k] = (uint8_t)next();
			len += i;
			break;
		case 3:	/* interesting byte values */
			if (len) {
				static const uint8_t v[] = { 0x00, 0x7f, 0x80,
				    0x81, 0x82, 0xff, 0x84, 0x01 };
				m[next() % len] = v[next() % sizeof(v)];
			}
			break;
		default: /* random bytes over a stretch */
			for (i = 0; i < len && i < 8; i++)
				m[next() % len] = (uint8_t)next();
			break;
		}
		run(m, len);
	}
	free(m);
}

int
main(int argc, char **argv)
{
	char dir[PATH_MAX], path[PATH_MAX + 256];
	const char *top = getenv("SPTSM_TOP"), *name;
	const char *env_rounds = getenv("FUZZ_ROUNDS");
	int rounds = env_rounds ? atoi(env_rounds) : 2000, nfiles = 0;
	struct dirent *de;
	DIR *d;

	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	name = strrchr(argv[0], '/');
	name = name ? name + 1 : argv[0];
	snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/%s", top ? top : ".",
	    name);
	run((const uint8_t *)"", 0);
	d = opendir(dir);
	if (d == NULL) {
		printf("not ok 1 - corpus directory %s missing\n1..1\n", dir);
		return 1;
	}
	while ((de = readdir(d)) != NULL) {
		FILE *f;
		uint8_t buf[65536];
		size_t n;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		f = fopen(path, "rb");
		if (f == NULL)
			continue;
		n = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		run(buf, n);
		mutate_and_run(buf, n, rounds);
		nfiles++;
	}
	closedir(d);
	printf("%s 1 - %s: %d seed(s), %d mutations each, no crash\n1..1\n",
	    nfiles > 0 ? "ok" : "not ok", name, nfiles, rounds);
	return nfiles > 0 ? 0 : 1;
}
