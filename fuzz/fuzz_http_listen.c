/*
 * fuzz_http_listen.c — arbitrary text into cl_http_parse_listen, the parser of the
 * http.listen option ("127.0.0.1:9464", "[::]:9464", "localhost:0"), which comes from
 * config files, environment variables and flags.
 *
 * Invariants: an accepted address is AF_INET with the sockaddr_in length or AF_INET6
 * with the sockaddr_in6 length; a rejected one is CL_EINVAL with a message.
 */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct sockaddr_storage addr;
    socklen_t len = 0;
    char err[CL_ERRLEN] = "";
    int rc = cl_http_parse_listen(text, &addr, &len, err, sizeof err);
    if (rc == CL_OK) {
        if (addr.ss_family == AF_INET) {
            if (len != sizeof(struct sockaddr_in)) abort();
        } else if (addr.ss_family == AF_INET6) {
            if (len != sizeof(struct sockaddr_in6)) abort();
        } else {
            abort();
        }
    } else if (rc != CL_EINVAL || err[0] == '\0') {
        abort();
    }
    free(text);
    return 0;
}
