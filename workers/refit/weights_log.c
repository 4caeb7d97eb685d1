/*
 * weights_log.c — transitions of the weights topic; reading and publishing it. See
 * weights_log.h.
 */
#include "weights_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "score.h"
#include "util.h"

static int finish(cl_weight_config *c, cl_model_status status, const char *reason, int64_t now_ms,
                  char *err, size_t errlen)
{
    c->status = status;
    c->created_at = now_ms;
    if (reason) cl_strlcpy(c->reason, reason, sizeof c->reason); /* truncation is acceptable */
    cl_weight_config_sort_categories(c);
    int rc = cl_weight_config_validate(c, err, errlen);
    return rc;
}

int cl_weights_promotion(const cl_weights_state *s, const cl_champion_comparison *comparison,
                         const char *reason, int64_t now_ms, cl_weight_config *const out[2],
                         size_t *n, char *err, size_t errlen)
{
    *n = 0;
    if (!s->challenger)
        return cl_seterr(err, errlen, CL_ENOTFOUND, "model %s has no live challenger to promote",
                         s->model);
    *out[0] = *s->challenger;
    if (comparison) {
        out[0]->has_comparison = true;
        out[0]->comparison = *comparison;
    }
    int rc = finish(out[0], CL_MODEL_CHAMPION, reason, now_ms, err, errlen);
    if (rc != CL_OK) return rc;
    *n = 1;
    if (s->champion) {
        *out[1] = *s->champion;
        char why[CL_REASON_MAX + 1];
        snprintf(why, sizeof why, "retired: superseded by v%" PRId64 " (%.900s)",
                 s->challenger->version, reason ? reason : "");
        rc = finish(out[1], CL_MODEL_RETIRED, why, now_ms, err, errlen);
        if (rc != CL_OK) return rc;
        *n = 2;
    }
    return CL_OK;
}

int cl_weights_rejection(const cl_weights_state *s, const cl_champion_comparison *comparison,
                         const char *reason, int64_t now_ms, cl_weight_config *out, char *err,
                         size_t errlen)
{
    if (!s->challenger)
        return cl_seterr(err, errlen, CL_ENOTFOUND, "model %s has no live challenger", s->model);
    *out = *s->challenger;
    if (comparison) {
        out->has_comparison = true;
        out->comparison = *comparison;
    }
    return finish(out, CL_MODEL_REJECTED, reason, now_ms, err, errlen);
}

int cl_weights_rollback(const cl_weights_state *s, const char *reason, int64_t now_ms,
                        cl_weight_config *const out[2], char *err, size_t errlen)
{
    if (!s->champion)
        return cl_seterr(err, errlen, CL_ENOTFOUND, "model %s has no champion on the topic",
                         s->model);
    if (!s->retired)
        return cl_seterr(err, errlen, CL_ENOTFOUND,
                         "model %s has no retired champion to roll back to", s->model);
    if (s->retired->version == s->champion->version)
        return cl_seterr(err, errlen, CL_ECONFLICT,
                         "model %s: the last retired version is the champion v%" PRId64, s->model,
                         s->champion->version);
    *out[0] = *s->retired;
    out[0]->version = s->max_version + 1;
    out[0]->parent_version = (cl_opt_long){true, s->champion->version};
    out[0]->has_comparison = false;
    char why[CL_REASON_MAX + 1];
    snprintf(why, sizeof why,
             "rollback to the weights of v%" PRId64 " (champion v%" PRId64 " retired)%s%.800s",
             s->retired->version, s->champion->version, reason && *reason ? ": " : "",
             reason ? reason : "");
    int rc = finish(out[0], CL_MODEL_CHAMPION, why, now_ms, err, errlen);
    if (rc != CL_OK) return rc;
    *out[1] = *s->champion;
    snprintf(why, sizeof why,
             "retired by rollback to the weights of v%" PRId64 " (now v%" PRId64 ")%s%.800s",
             s->retired->version, out[0]->version, reason && *reason ? ": " : "",
             reason ? reason : "");
    return finish(out[1], CL_MODEL_RETIRED, why, now_ms, err, errlen);
}

/* ---- Kafka ---------------------------------------------------------------------- */

int cl_weights_decode(cl_avro_codec *codec, const void *value, size_t len, cl_weight_config *c,
                      char *err, size_t errlen)
{
    avro_value_t *v;
    int rc = cl_avro_codec_decode(codec, value, len, &v, err, errlen);
    if (rc != CL_OK) return rc;
    return cl_weight_config_from_avro(v, c, err, errlen);
}

int cl_weights_read_topic(const cl_config *cfg, const cl_avro_schemas *schemas,
                          cl_registry *registry, const char *topic, cl_weights_state *s,
                          int timeout_ms, char *err, size_t errlen)
{
    cl_avro_codec *codec = NULL;
    cl_avro_codec_opts co = {CL_AVRO_FRAMING_AUTO, registry, NULL, 0};
    int rc = cl_avro_codec_new(&codec, schemas, "closedloop.WeightConfig", &co, err, errlen);
    if (rc != CL_OK) return rc;
    cl_weight_config *c = malloc(sizeof *c);
    cl_consumer *cons = NULL;
    const char *topics[1] = {topic};
    cl_consumer_opts opts = {0};
    opts.topics = topics;
    opts.ntopics = 1;
    opts.read_to_end = 1;
    if (!c) {
        rc = cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
        goto done;
    }
    rc = cl_consumer_new(cfg, &opts, &cons, err, errlen);
    if (rc != CL_OK) goto done;
    int64_t deadline = cl_mono_ms() + timeout_ms;
    cl_message msgs[64];
    while (rc == CL_OK) {
        if (cl_consumer_at_end(cons)) break;
        if (cl_mono_ms() > deadline) {
            rc = cl_seterr(err, errlen, CL_ETIMEOUT,
                           "topic %s: not read to its end within %d ms (is the broker up and "
                           "the topic created?)",
                           topic, timeout_ms);
            break;
        }
        size_t n = 0;
        rc = cl_consumer_poll(cons, msgs, 64, &n, 200, err, errlen);
        for (size_t i = 0; i < n && rc == CL_OK; i++) {
            char derr[CL_ERRLEN];
            if (!msgs[i].value) continue; /* a tombstone removes a key; it carries no state */
            if (cl_weights_decode(codec, msgs[i].value, msgs[i].value_len, c, derr, sizeof derr) !=
                CL_OK) {
                cl_log(CL_LOG_WARN, "weights_record_skipped",
                       "topic=%s partition=%d offset=%" PRId64 " error=\"%s\"", msgs[i].topic,
                       (int)msgs[i].partition, msgs[i].offset, derr);
                continue;
            }
            int applied;
            rc = cl_weights_state_apply(s, c, &applied, err, errlen);
        }
        cl_messages_release(msgs, n);
    }
done:
    if (cons) {
        char cerr[CL_ERRLEN];
        cl_consumer_close(cons, 5000, cerr, sizeof cerr);
    }
    free(c);
    cl_avro_codec_free(codec);
    return rc;
}

typedef struct {
    int acked, failed;
    char reason[256];
} delivery;

void cl_weights_on_delivery(void *msg_opaque, int status, const char *topic, int32_t partition,
                            int64_t offset, const char *reason, void *ud)
{
    delivery *d = msg_opaque;
    if (!d) return;
    if (status == CL_OK) {
        d->acked++;
    } else {
        d->failed++;
        snprintf(d->reason, sizeof d->reason, "%s", reason ? reason : cl_status_name(status));
    }
}

int cl_weights_publish(cl_producer *p, cl_avro_codec *codec, const char *topic,
                       cl_weight_config *const *configs, size_t n, int timeout_ms, char *err,
                       size_t errlen)
{
    /* On the heap: if the flush times out, the records stay in flight and their
     * delivery reports arrive later, so the tracker must outlive this call. */
    delivery *dp = calloc(1, sizeof *dp);
    if (!dp) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    cl_buf buf;
    cl_buf_init(&buf, 64u << 20);
    int rc = CL_OK;
    size_t sent = 0;
    for (size_t i = 0; i < n && rc == CL_OK; i++) {
        char key[CL_WEIGHTS_KEY_MAX + 1];
        rc = cl_weight_config_validate(configs[i], err, errlen);
        if (rc == CL_OK) rc = cl_weights_key(configs[i], key, err, errlen);
        avro_value_t *v = cl_avro_codec_value(codec);
        cl_buf_reset(&buf);
        if (rc == CL_OK) rc = cl_weight_config_to_avro(configs[i], v, err, errlen);
        if (rc == CL_OK) rc = cl_avro_codec_encode(codec, v, &buf, err, errlen);
        if (rc == CL_OK)
            rc = cl_producer_send(p, topic, key, strlen(key), buf.data, buf.len, NULL, 0, dp,
                                  timeout_ms, err, errlen);
        if (rc == CL_OK) sent++;
    }
    cl_buf_free(&buf);
    char ferr[CL_ERRLEN];
    int frc = cl_producer_flush(p, timeout_ms, ferr, sizeof ferr);
    if (frc != CL_OK) {
        /* dp is deliberately not freed: reports for its records are still due. */
        return rc != CL_OK ? rc : cl_seterr(err, errlen, frc, "topic %s: %s", topic, ferr);
    }
    delivery d = *dp;
    free(dp);
    if (rc != CL_OK) return rc;
    if (d.failed > 0 || (size_t)d.acked != sent)
        return cl_seterr(err, errlen, CL_EIO,
                         "topic %s: %d of %zu weight records not acknowledged: %s", topic,
                         (int)sent - d.acked, sent, d.reason);
    return CL_OK;
}
