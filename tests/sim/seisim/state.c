/*
 * state.c - the simulator's JSON state file VAR/seisim/state.json (format
 * sptsm-seisim/1, README.md): tasks, SSDs created per SE with their first
 * keys (DEMO: in clear), key-sync and sd-status outcomes. Changed only
 * under an exclusive flock (server and `seisim repair` alike), written
 * atomically (temp, fsync, rename). Runs in seisim; the file is re-checked
 * on every load.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <unistd.h>

#include "tests/sim/seisim/seisim.h"

int
seisim_hex(const char *s, uint8_t *out, size_t cap, size_t *n)
{
	if (s == NULL || *s == '\0')
		return ERR_PARSE;
	return hex_decode(s, strlen(s), out, cap, n) == 0 && *n > 0 ? 0 :
	    ERR_PARSE;
}

void
seisim_hexu(const uint8_t *p, size_t n, char *out)
{
	hex_encode_upper(p, n, out);
}

static int
valid(json_t *root)
{
	const char *f = json_string_value(json_object_get(root, "format"));
	json_t *t = json_object_get(root, "tasks"), *s = json_object_get(root,
	    "ssds");

	return json_is_object(root) && f != NULL &&
	    strcmp(f, SEISIM_STATE_FORMAT) == 0 &&
	    (t == NULL || json_is_array(t)) && (s == NULL || json_is_array(s));
}

int
seisim_state_open(struct seisim_state *st, const char *dir,
    const char *sei_tsm_id)
{
	json_error_t je;

	memset(st, 0, sizeof(*st));
	st->lock_fd = -1;
	if (snprintf(st->path, sizeof(st->path), "%s/state.json", dir) >=
	    (int)sizeof(st->path) ||
	    snprintf(st->lock_path, sizeof(st->lock_path), "%s/state.lock",
	    dir) >= (int)sizeof(st->lock_path))
		return ERR_TOOBIG;
	if ((st->lock_fd = open(st->lock_path, O_RDWR | O_CREAT | O_CLOEXEC,
	    0600)) < 0) {
		log_msg(LOG_ERR, "event=state_lock_failed path=%s errno=%d",
		    st->lock_path, errno);
		return ERR_IO;
	}
	while (flock(st->lock_fd, LOCK_EX) != 0)
		if (errno != EINTR) {
			seisim_state_close(st);
			return ERR_IO;
		}
	if (access(st->path, F_OK) != 0) {
		st->root = json_pack("{s:s, s:s, s:s, s:i, s:[], s:[], s:{s:i}}",
		    "format", SEISIM_STATE_FORMAT,
		    "note", "SEI-TSM SIMULATOR STATE - DEMO ONLY. The SSD keys "
		    "below are kept IN CLEAR (a simulator plays the card issuer); "
		    "never use this for anything real.",
		    "seiTsmId", sei_tsm_id, "nextTask", 1, "tasks", "ssds",
		    "tokens", "issued", 0);
		return st->root != NULL ? 0 : ERR_NOMEM;
	}
	st->root = json_load_file(st->path, JSON_REJECT_DUPLICATES, &je);
	if (st->root == NULL || !valid(st->root)) {
		log_msg(LOG_ERR, "event=state_unreadable path=%s detail=\"%s\"",
		    st->path, st->root ? "not an sptsm-seisim/1 file" : je.text);
		seisim_state_close(st);
		return ERR_PARSE;
	}
	return 0;
}

int
seisim_state_commit(struct seisim_state *st)
{
	char *s = json_dumps(st->root, JSON_INDENT(2));
	int rc;

	if (s == NULL)
		return ERR_NOMEM;
	rc = file_write_atomic(st->path, s, strlen(s), 0600);
	wipe(s, strlen(s));	/* it holds demo keys */
	free(s);
	if (rc != 0)
		log_msg(LOG_ERR, "event=state_write_failed path=%s err=%s",
		    st->path, err_name(rc));
	return rc;
}

void
seisim_state_close(struct seisim_state *st)
{
	json_decref(st->root);
	st->root = NULL;
	if (st->lock_fd >= 0) {
		(void)flock(st->lock_fd, LOCK_UN);
		close(st->lock_fd);
	}
	st->lock_fd = -1;
}

static json_t *
array_of(struct seisim_state *st, const char *name)
{
	json_t *a = json_object_get(st->root, name);

	if (!json_is_array(a)) {
		a = json_array();
		if (a == NULL || json_object_set_new(st->root, name, a) != 0)
			return NULL;
	}
	return a;
}

json_t *
seisim_state_tasks(struct seisim_state *st)
{
	return array_of(st, "tasks");
}

json_t *
seisim_state_ssds(struct seisim_state *st)
{
	return array_of(st, "ssds");
}

json_t *
seisim_state_task(struct seisim_state *st, const char *task_id)
{
	json_t *a = seisim_state_tasks(st), *t;
	const char *id;
	size_t i;

	json_array_foreach(a, i, t) {
		id = json_string_value(json_object_get(t, "taskId"));
		if (id != NULL && strcmp(id, task_id) == 0)
			return t;
	}
	return NULL;
}

json_t *
seisim_state_ssd(struct seisim_state *st, const char *se_id,
    const char *sd_aid)
{
	json_t *a = seisim_state_ssds(st), *t;
	const char *se, *aid;
	size_t i;

	json_array_foreach(a, i, t) {
		se = json_string_value(json_object_get(t, "seId"));
		aid = json_string_value(json_object_get(t, "sdAid"));
		if (se != NULL && aid != NULL && strcasecmp(se, se_id) == 0 &&
		    strcasecmp(aid, sd_aid) == 0)
			return t;
	}
	return NULL;
}

int
seisim_state_next_task_id(struct seisim_state *st, char *out, size_t cap)
{
	json_int_t n = json_integer_value(json_object_get(st->root, "nextTask"));

	if (n < 1)
		n = 1;
	snprintf(out, cap, "SIM-%06lld", (long long)n);
	return json_object_set_new(st->root, "nextTask", json_integer(n + 1)) ==
	    0 ? 0 : ERR_NOMEM;
}

void
seisim_state_trim(struct seisim_state *st)
{
	json_t *a = seisim_state_tasks(st), *t;
	const char *state;
	size_t i = 0;

	while (a != NULL && json_array_size(a) > SEISIM_TASKS_KEPT &&
	    i < json_array_size(a)) {
		t = json_array_get(a, i);
		state = json_string_value(json_object_get(t, "state"));
		if (state != NULL && strcmp(state, "RUNNING") != 0)
			(void)json_array_remove(a, i);
		else
			i++;
	}
}
