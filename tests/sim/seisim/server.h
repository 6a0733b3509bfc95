/*
 * server.h - the simulator's HTTPS server (server.c): start on s->listen
 * with the given PEM certificate and key (ignored with s->no_tls), bound
 * port, stop. Runs in seisim.
 */
#ifndef SPTSM_SEISIM_SERVER_H
#define SPTSM_SEISIM_SERVER_H

#include "tests/sim/seisim/seisim.h"

struct seisim_server;

/* ERR_INVAL for a bad --listen, ERR_IO when MHD cannot start (port in
 * use, bad TLS material). */
int  seisim_server_start(struct seisim *s, struct seisim_server **out,
	    const char *cert_pem, const char *key_pem) WUR;
uint16_t seisim_server_port(const struct seisim_server *sv);
void seisim_server_stop(struct seisim_server *sv);

#endif
