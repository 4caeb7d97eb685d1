/*
 * gen.c — the synthetic CRM history behind closedloop-gen. See gen.h for the contract
 * and docs/generator.md for the model.
 *
 * Layout of the work: cl_gen_create() draws accounts, owners and one fixed-size
 * opportunity record each (its lifecycle, static component bases and outcome);
 * everything time-dependent (stage, days in stage, the components of a given run) is
 * a pure function of that record, the run and hashed noise, so the writer can stream
 * run after run without storing snapshots.
 */
#include "gen/gen.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

const char *const cl_gen_component_names[CL_GEN_COMPONENTS] = {
    "speed_to_close", "largest_deal", "product_mix", "upsell_instances", "win_rate", "recency",
};
const int cl_gen_seed_weight_hundredths[CL_GEN_COMPONENTS] = {15, 20, 15, 25, 20, 5};
const double cl_gen_default_true_weights[CL_GEN_COMPONENTS] = {0.30, 0.05, 0.10, 0.10, 0.35, 0.10};
const char *const cl_gen_stage_names[CL_GEN_STAGE_COUNT] = {
    "Prospecting", "Qualification", "Needs Analysis", "Proposal",
    "Negotiation", "Closed Won",    "Closed Lost",
};

/* ---- categorical vocabularies and their shares ---------------------------------- */

typedef struct {
    const char *name;
    double share;
} weighted_name;

enum { SEGMENT_SMB = 0, SEGMENT_MIDMARKET, SEGMENT_ENTERPRISE, SEGMENT_COUNT };
static const weighted_name segments[SEGMENT_COUNT] = {
    {"SMB", 0.60}, {"MidMarket", 0.30}, {"Enterprise", 0.10}};
/* Median amount (USD) and median planned sales cycle (days) per segment. */
static const double segment_median_amount[SEGMENT_COUNT] = {8000.0, 40000.0, 180000.0};
static const double segment_median_cycle[SEGMENT_COUNT] = {21.0, 45.0, 90.0};

#define REGION_COUNT 4
static const weighted_name regions[REGION_COUNT] = {
    {"NA", 0.45}, {"EMEA", 0.30}, {"APAC", 0.17}, {"LATAM", 0.08}};

#define INDUSTRY_COUNT 7
static const weighted_name industries[INDUSTRY_COUNT] = {
    {"Technology", 0.24},   {"Financial Services", 0.16},
    {"Healthcare", 0.14},   {"Manufacturing", 0.16},
    {"Retail", 0.14},       {"Education", 0.08},
    {"Public Sector", 0.08}};

enum { TYPE_NEW = 0, TYPE_EXISTING, TYPE_UPSELL, TYPE_COUNT };
static const weighted_name types[TYPE_COUNT] = {
    {"New Business", 0.55}, {"Existing Business", 0.25}, {"Upsell", 0.20}};

#define PRODUCT_COUNT 5
static const weighted_name products[PRODUCT_COUNT] = {{"Core Platform", 0.35},
                                                      {"Analytics", 0.20},
                                                      {"Integrations", 0.15},
                                                      {"Support Plus", 0.15},
                                                      {"Enterprise Suite", 0.15}};

/* Salesforce's standard LeadSource picklist; the remaining 10% are left blank (null),
 * as real orgs do. The effects apply only with learned_factors: they are the signal
 * the refit's learned-factor search should find. */
#define LEAD_SOURCE_COUNT 7
#define LEAD_SOURCE_NULL 0xFF
static const weighted_name lead_sources[LEAD_SOURCE_COUNT] = {{"Web", 0.30},
                                                              {"Phone Inquiry", 0.10},
                                                              {"Partner Referral", 0.15},
                                                              {"Purchased List", 0.08},
                                                              {"Trade Show", 0.12},
                                                              {"Employee Referral", 0.07},
                                                              {"Other", 0.08}};
static const double lead_source_effect[LEAD_SOURCE_COUNT] = {0.0, 0.2, 0.7, -0.8, -0.2, 0.5, 0.0};
/* Logit change per standard deviation of owner skill (learned_factors only). */
#define OWNER_SKILL_EFFECT 0.6

/* Stage reached before a loss (Prospecting .. Negotiation). */
static const double lost_stage_share[5] = {0.20, 0.25, 0.25, 0.15, 0.15};

/* ---- PRNG ---------------------------------------------------------------------- */

uint64_t cl_gen_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void cl_gen_rng_seed(cl_gen_rng *rng, uint64_t seed)
{
    uint64_t state = seed;
    for (int i = 0; i < 4; i++)
        rng->s[i] = cl_gen_splitmix64(&state);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t cl_gen_rng_next(cl_gen_rng *rng)
{
    uint64_t *s = rng->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double cl_gen_rng_uniform(cl_gen_rng *rng)
{
    return (double)(cl_gen_rng_next(rng) >> 11) * 0x1.0p-53;
}

/* Uniform integer in [0, n), n > 0, without modulo bias (Lemire's method). */
static uint64_t rng_below(cl_gen_rng *rng, uint64_t n)
{
    __uint128_t m = (__uint128_t)cl_gen_rng_next(rng) * n;
    uint64_t low = (uint64_t)m;
    if (low < n) {
        uint64_t threshold = -n % n;
        while (low < threshold) {
            m = (__uint128_t)cl_gen_rng_next(rng) * n;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

static double normal_from_uniforms(double u1, double u2)
{
    /* Box-Muller; u1 in (0, 1] so the log is finite. */
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static double rng_normal(cl_gen_rng *rng)
{
    double u1 = 1.0 - cl_gen_rng_uniform(rng);
    return normal_from_uniforms(u1, cl_gen_rng_uniform(rng));
}

static int rng_pick(cl_gen_rng *rng, const weighted_name *table, int n)
{
    double u = cl_gen_rng_uniform(rng), acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += table[i].share;
        if (u < acc) return i;
    }
    return n - 1;
}

static uint64_t mix64(uint64_t x)
{
    uint64_t state = x;
    return cl_gen_splitmix64(&state);
}

/* Stream domains: each entity kind draws from its own family of streams. */
enum {
    DOMAIN_ACCOUNT = 1,
    DOMAIN_OWNER,
    DOMAIN_OPPORTUNITY,
    DOMAIN_NOISE,
    DOMAIN_TIME_OF_DAY,
    DOMAIN_IDS,
};

static uint64_t key3(uint64_t seed, uint64_t domain, uint64_t index)
{
    uint64_t h = mix64(seed ^ 0x6A09E667F3BCC908ull);
    h = mix64(h ^ (domain * 0x9E3779B97F4A7C15ull));
    return mix64(h ^ index);
}

static void stream(cl_gen_rng *rng, uint64_t seed, uint64_t domain, uint64_t index)
{
    cl_gen_rng_seed(rng, key3(seed, domain, index));
}

/* Standard normal hashed from (opportunity, run, component): the per-run wobble of a
 * component, reproducible without any stored state. */
static double hashed_normal(uint64_t seed, uint64_t opp, uint64_t run, uint64_t component)
{
    uint64_t h = key3(seed, DOMAIN_NOISE, opp);
    h = mix64(h ^ (run * 0xD1B54A32D192ED03ull) ^ (component << 56));
    uint64_t h2 = mix64(h);
    double u1 = 1.0 - (double)(h >> 11) * 0x1.0p-53;
    double u2 = (double)(h2 >> 11) * 0x1.0p-53;
    return normal_from_uniforms(u1, u2);
}

/* ---- civil dates (proleptic Gregorian; H. Hinnant's algorithms) ------------------ */

static int32_t days_from_civil(int y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int32_t)doe - 719468;
}

static void civil_from_days(int32_t z, int *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)yoe + era * 400 + (*m <= 2);
}

static int32_t add_months(int32_t day, int months)
{
    int y;
    unsigned m, d;
    civil_from_days(day, &y, &m, &d);
    int total = y * 12 + (int)m - 1 + months;
    int ny = total / 12;
    unsigned nm = (unsigned)(total % 12) + 1;
    static const unsigned mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    unsigned last = mdays[nm - 1];
    if (nm == 2 && ((ny % 4 == 0 && ny % 100 != 0) || ny % 400 == 0)) last = 29;
    return days_from_civil(ny, nm, d > last ? last : d);
}

/* 0 = Sunday .. 6 = Saturday (1970-01-01 was a Thursday). */
static int weekday(int32_t day)
{
    return (int)(((day % 7) + 11) % 7);
}

/* ---- the history ----------------------------------------------------------------- */

typedef struct {
    float fit;         /* latent account quality, N(0,1) */
    float product_mix; /* account-level parts of two components, N(0,1) */
    float upsell;
    uint8_t segment, region, industry;
    int8_t account_score; /* 0..100, -1: not scored (null) */
} account_rec;

typedef struct {
    float skill; /* N(0,1) */
    uint8_t region;
} owner_rec;

enum {
    OPP_WON = 1u << 0,
    OPP_REOPENED = 1u << 1, /* a re-open is drawn (it may fall after the end) */
    OPP_DELETED = 1u << 2,  /* a deletion is drawn (it may fall after the end) */
};

typedef struct {
    int32_t created, first_close, reopen, close, expected, deleted;
    uint32_t account, owner;
    uint32_t amount;               /* whole currency units */
    float base[CL_GEN_COMPONENTS]; /* static part of each component, before time terms */
    uint16_t stage_entry[5];       /* day offsets from created of each stage reached */
    int16_t last_run;              /* -1: no run saw it before the final close */
    uint8_t max_stage, type, product, lead_source, flags;
    uint8_t outcome_components[CL_GEN_COMPONENTS];
    float win_probability;
} opp_rec;

struct cl_gen {
    cl_gen_options opt;
    int32_t end_day, horizon_days;
    int run_count;
    uint64_t id_base[3]; /* per key prefix: accounts, users, opportunities */
    account_rec *accounts;
    owner_rec *owners;
    opp_rec *opps;
    char (*ids[3])[19]; /* per key prefix, every entity's id, computed once */
    cl_gen_counts counts;
};

void cl_gen_options_init(cl_gen_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->seed = 1;
    opt->start_day = days_from_civil(2024, 1, 1);
    opt->months = 18;
    opt->opportunities = 20000;
    opt->run_interval_days = 7;
    opt->format = CL_GEN_FORMAT_CSV;
    opt->reopen_rate = 0.02;
    opt->delete_rate = 0.01;
    memcpy(opt->currency, "USD", 4);
    memcpy(opt->true_weights, cl_gen_default_true_weights, sizeof opt->true_weights);
    opt->intercept = CL_GEN_DEFAULT_INTERCEPT;
    opt->slope = CL_GEN_DEFAULT_SLOPE;
}

int cl_gen_parse_weights(const char *text, double weights[CL_GEN_COMPONENTS], char *err,
                         size_t errlen)
{
    double parsed[CL_GEN_COMPONENTS];
    int seen[CL_GEN_COMPONENTS] = {0};
    const char *p = text;
    if (!text || !*text) return cl_seterr(err, errlen, CL_EINVAL, "true weights: empty");
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (!eq)
            return cl_seterr(err, errlen, CL_EINVAL, "true weights: item '%.*s' is not name=value",
                             (int)len, p);
        size_t name_len = (size_t)(eq - p);
        int which = -1;
        for (int i = 0; i < CL_GEN_COMPONENTS; i++)
            if (strlen(cl_gen_component_names[i]) == name_len &&
                memcmp(cl_gen_component_names[i], p, name_len) == 0)
                which = i;
        if (which < 0)
            return cl_seterr(err, errlen, CL_EINVAL,
                             "true weights: unknown component '%.*s' (expected one of "
                             "speed_to_close, largest_deal, product_mix, upsell_instances, "
                             "win_rate, recency)",
                             (int)name_len, p);
        if (seen[which])
            return cl_seterr(err, errlen, CL_EINVAL, "true weights: '%s' given twice",
                             cl_gen_component_names[which]);
        char number[64];
        size_t value_len = len - name_len - 1;
        if (value_len == 0 || value_len >= sizeof number)
            return cl_seterr(err, errlen, CL_EINVAL, "true weights: bad value for '%s'",
                             cl_gen_component_names[which]);
        memcpy(number, eq + 1, value_len);
        number[value_len] = '\0';
        char *stop = NULL;
        errno = 0;
        double v = strtod(number, &stop);
        if (errno || stop == number || *stop || !isfinite(v) || v < 0.0 || v > 1.0)
            return cl_seterr(err, errlen, CL_EINVAL,
                             "true weights: '%s' for '%s' is not a number in [0, 1]", number,
                             cl_gen_component_names[which]);
        parsed[which] = v;
        seen[which] = 1;
        p = end ? end + 1 : p + len;
        if (end && !*p) return cl_seterr(err, errlen, CL_EINVAL, "true weights: trailing comma");
    }
    double sum = 0.0;
    for (int i = 0; i < CL_GEN_COMPONENTS; i++) {
        if (!seen[i])
            return cl_seterr(err, errlen, CL_EINVAL, "true weights: '%s' is missing",
                             cl_gen_component_names[i]);
        sum += parsed[i];
    }
    if (fabs(sum - 1.0) > 1e-6)
        return cl_seterr(err, errlen, CL_EINVAL, "true weights: they sum to %.6f, not 1", sum);
    memcpy(weights, parsed, sizeof parsed);
    return CL_OK;
}

static int validate(const cl_gen_options *o, char *err, size_t errlen)
{
    if (o->months < 1 || o->months > CL_GEN_MAX_MONTHS)
        return cl_seterr(err, errlen, CL_EINVAL, "months %d is outside 1..%d", o->months,
                         CL_GEN_MAX_MONTHS);
    if (o->opportunities < 1 || o->opportunities > CL_GEN_MAX_OPPORTUNITIES)
        return cl_seterr(err, errlen, CL_EINVAL, "opportunities %lld is outside 1..%d",
                         (long long)o->opportunities, CL_GEN_MAX_OPPORTUNITIES);
    if (o->accounts < 0 || o->accounts > CL_GEN_MAX_OPPORTUNITIES)
        return cl_seterr(err, errlen, CL_EINVAL, "accounts %lld is outside 0..%d",
                         (long long)o->accounts, CL_GEN_MAX_OPPORTUNITIES);
    if (o->owners < 0 || o->owners > 1000000)
        return cl_seterr(err, errlen, CL_EINVAL, "owners %lld is outside 0..1000000",
                         (long long)o->owners);
    if (o->run_interval_days < 1 || o->run_interval_days > 365)
        return cl_seterr(err, errlen, CL_EINVAL, "run interval %d days is outside 1..365",
                         o->run_interval_days);
    /* 1970 .. 9000 keeps every derived timestamp positive and every year four digits. */
    if (o->start_day < 0 || o->start_day > days_from_civil(9000, 1, 1))
        return cl_seterr(err, errlen, CL_EINVAL, "start date is outside 1970-01-01..9000-01-01");
    if (o->format != CL_GEN_FORMAT_CSV && o->format != CL_GEN_FORMAT_JSONL)
        return cl_seterr(err, errlen, CL_EINVAL, "unknown run file format %d", (int)o->format);
    if (!(o->reopen_rate >= 0.0 && o->reopen_rate <= 0.5))
        return cl_seterr(err, errlen, CL_EINVAL, "reopen rate %g is outside 0..0.5",
                         o->reopen_rate);
    if (!(o->delete_rate >= 0.0 && o->delete_rate <= 0.5))
        return cl_seterr(err, errlen, CL_EINVAL, "delete rate %g is outside 0..0.5",
                         o->delete_rate);
    for (int i = 0; i < 3; i++)
        if (o->currency[i] < 'A' || o->currency[i] > 'Z')
            return cl_seterr(err, errlen, CL_EINVAL,
                             "currency '%.3s' is not three upper-case letters (ISO 4217)",
                             o->currency);
    if (o->currency[3] != '\0')
        return cl_seterr(err, errlen, CL_EINVAL, "currency is longer than three letters");
    double sum = 0.0;
    for (int i = 0; i < CL_GEN_COMPONENTS; i++) {
        if (!(o->true_weights[i] >= 0.0 && o->true_weights[i] <= 1.0))
            return cl_seterr(err, errlen, CL_EINVAL, "true weight of %s is outside 0..1",
                             cl_gen_component_names[i]);
        sum += o->true_weights[i];
    }
    if (fabs(sum - 1.0) > 1e-6)
        return cl_seterr(err, errlen, CL_EINVAL, "true weights sum to %.6f, not 1", sum);
    if (!(isfinite(o->intercept) && fabs(o->intercept) <= 100.0))
        return cl_seterr(err, errlen, CL_EINVAL, "true intercept %g is outside -100..100",
                         o->intercept);
    if (!(o->slope > 0.0 && o->slope <= 10.0))
        return cl_seterr(err, errlen, CL_EINVAL, "true slope %g is outside (0, 10]", o->slope);
    return CL_OK;
}

int32_t cl_gen_end_day(const cl_gen *g)
{
    return g->end_day;
}
int cl_gen_run_count(const cl_gen *g)
{
    return g->run_count;
}
int32_t cl_gen_run_day(const cl_gen *g, int run)
{
    return g->opt.start_day + run * g->opt.run_interval_days;
}
const cl_gen_counts *cl_gen_get_counts(const cl_gen *g)
{
    return &g->counts;
}

/* What the scoring run of day t sees. Runs happen at 06:00Z and every record change
 * (creation, close, re-open) at 13:00-23:00Z, so the run sees a deal created on an
 * earlier day, not finally closed before t, and not in the gap from its first close
 * through the day it was re-opened. Hence every snapshot precedes its close date. */
static int is_open(const opp_rec *o, int32_t day)
{
    if (day <= o->created || day >= o->close) return 0;
    if ((o->flags & OPP_REOPENED) && day >= o->first_close && day <= o->reopen) return 0;
    return 1;
}

static double clamp(double x, double lo, double hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

/* The six components of opportunity `index` as seen on `day`; `noise_key` selects the
 * per-run wobble (the run number, or a key no run uses for the creation-day view). */
static void components_at(const cl_gen *g, int64_t index, const opp_rec *o, int32_t day,
                          uint64_t noise_key, uint8_t out[CL_GEN_COMPONENTS])
{
    double drift = (double)(day - g->opt.start_day) / (double)g->horizon_days;
    double age = (double)(day - o->created);
    double planned = (double)(o->expected - o->created);
    double overdue = clamp(age / planned - 0.5, 0.0, 1.0); /* ageing past half the plan */
    double staleness = clamp(age / (2.0 * planned), 0.0, 1.0);
    double v[CL_GEN_COMPONENTS];
    v[0] = o->base[0] - 20.0 * overdue; /* speed_to_close falls as the deal drags */
    v[1] = o->base[1];                  /* largest_deal: fixed by size */
    v[2] = o->base[2] + 5.0 * drift;    /* product_mix: broader catalogue over time */
    v[3] = o->base[3] + 3.0 * drift;    /* upsell_instances */
    v[4] = o->base[4] + 6.0 * drift;    /* win_rate: the team gets better */
    v[5] = o->base[5] - 12.0 * staleness - 6.0 * drift; /* recency decays with age */
    static const double noise_sd[CL_GEN_COMPONENTS] = {3.0, 2.0, 2.0, 2.0, 3.0, 8.0};
    for (int i = 0; i < CL_GEN_COMPONENTS; i++) {
        double x = v[i] + noise_sd[i] *
                              hashed_normal(g->opt.seed, (uint64_t)index, noise_key, (uint64_t)i);
        out[i] = (uint8_t)clamp(floor(x + 0.5), 0.0, 100.0);
    }
}

#define NOISE_KEY_CREATION 0xFFFFFFFFull

static int stage_at(const opp_rec *o, int32_t day, int32_t *entered)
{
    if ((o->flags & OPP_REOPENED) && day >= o->reopen) {
        *entered = o->reopen;
        return CL_GEN_NEGOTIATION;
    }
    int32_t offset = day - o->created;
    int stage = 0;
    for (int k = 1; k <= o->max_stage; k++)
        if (o->stage_entry[k] <= offset) stage = k;
    *entered = o->created + o->stage_entry[stage];
    return stage;
}

/* The close date a snapshot on `day` shows: the plan, pushed out once it has passed. */
static int32_t expected_close_at(const opp_rec *o, int32_t day)
{
    int32_t plan = o->expected;
    if ((o->flags & OPP_REOPENED) && day >= o->reopen) plan = o->reopen + 21;
    return day >= plan ? day + 14 : plan;
}

static int32_t score_hundredths(const uint8_t c[CL_GEN_COMPONENTS])
{
    int32_t s = 0;
    for (int i = 0; i < CL_GEN_COMPONENTS; i++)
        s += cl_gen_seed_weight_hundredths[i] * c[i];
    return s; /* sum of weights x100 times components: the score in hundredths */
}

/* Last run that saw the opportunity open before its final close, or -1. */
static int last_run_before_close(const cl_gen *g, const opp_rec *o)
{
    int interval = g->opt.run_interval_days;
    int32_t start = g->opt.start_day;
    if (o->close - 1 < start) return -1;
    int64_t k = ((int64_t)o->close - 1 - start) / interval;
    for (; k >= 0; k--) {
        int32_t day = start + (int32_t)k * interval;
        if (day <= o->created) return -1;
        if (is_open(o, day)) return (int)k;
    }
    return -1;
}

static void generate_opportunity(cl_gen *g, int64_t index)
{
    const cl_gen_options *opt = &g->opt;
    opp_rec *o = &g->opps[index];
    cl_gen_rng rng;
    stream(&rng, opt->seed, DOMAIN_OPPORTUNITY, (uint64_t)index);

    /* Creation: stratified over the history (opportunity i lands in the i-th slice, so
     * creation order follows the index) with pipeline growth: density 1 + 0.5 x. */
    double x = ((double)index + cl_gen_rng_uniform(&rng)) / (double)opt->opportunities;
    const double growth = 0.5;
    double t = (-1.0 + sqrt(1.0 + growth * x * (2.0 + growth))) / growth; /* inverse CDF */
    int32_t created = opt->start_day + (int32_t)(t * g->horizon_days);
    if (created >= g->end_day) created = g->end_day - 1;
    int wd = weekday(created); /* reps rarely create deals at the weekend */
    if (wd == 6)
        created -= 1;
    else if (wd == 0)
        created = created + 1 < g->end_day ? created + 1 : created - 2;
    if (created < opt->start_day) created = opt->start_day;
    o->created = created;

    o->account = (uint32_t)rng_below(&rng, (uint64_t)g->counts.accounts);
    o->owner = (uint32_t)rng_below(&rng, (uint64_t)g->counts.owners);
    const account_rec *a = &g->accounts[o->account];
    const owner_rec *w = &g->owners[o->owner];
    o->type = (uint8_t)rng_pick(&rng, types, TYPE_COUNT);
    o->product = (uint8_t)rng_pick(&rng, products, PRODUCT_COUNT);
    o->lead_source = cl_gen_rng_uniform(&rng) < 0.10
                         ? LEAD_SOURCE_NULL
                         : (uint8_t)rng_pick(&rng, lead_sources, LEAD_SOURCE_COUNT);

    double amount_z = rng_normal(&rng);
    double amount = floor(segment_median_amount[a->segment] * exp(0.7 * amount_z) + 0.5);
    o->amount = (uint32_t)clamp(amount, 500.0, 1e9);

    /* Planned cycle and the slip that usually makes the real one longer. */
    double planned = segment_median_cycle[a->segment] * exp(0.4 * rng_normal(&rng));
    int32_t planned_days = (int32_t)clamp(floor(planned + 0.5), 7.0, 720.0);
    o->expected = created + planned_days;
    double actual = planned_days * exp(0.15 + 0.35 * rng_normal(&rng));
    o->first_close = created + (int32_t)clamp(floor(actual + 0.5), 3.0, 1000.0);

    if (cl_gen_rng_uniform(&rng) < opt->reopen_rate) {
        o->flags |= OPP_REOPENED;
        o->reopen = o->first_close + 5 + (int32_t)rng_below(&rng, 25);
        o->close = o->reopen + 10 + (int32_t)rng_below(&rng, 40);
    } else {
        o->reopen = -1;
        o->close = o->first_close;
    }
    if (cl_gen_rng_uniform(&rng) < opt->delete_rate) {
        o->flags |= OPP_DELETED;
        o->deleted = o->close + 7 + (int32_t)rng_below(&rng, 60);
    } else {
        o->deleted = -1;
    }

    /* Static component bases: a latent quality shared in part with the account, plus
     * independent variation per component, so components correlate (about 0.1) but
     * each carries its own signal. */
    double quality = 0.6 * a->fit + 0.8 * rng_normal(&rng);
    double z[CL_GEN_COMPONENTS];
    for (int i = 0; i < CL_GEN_COMPONENTS; i++)
        z[i] = 0.35 * quality + 0.937 * rng_normal(&rng);
    static const double type_upsell_shift[TYPE_COUNT] = {0.0, 8.0, 15.0};
    o->base[0] = (float)(55.0 + 18.0 * z[0]);
    o->base[1] = (float)(50.0 + 14.0 * z[1] + 7.0 * amount_z);
    o->base[2] = (float)(45.0 + 13.0 * z[2] + 9.0 * a->product_mix);
    o->base[3] = (float)(38.0 + 13.0 * z[3] + 9.0 * a->upsell + type_upsell_shift[o->type]);
    o->base[4] = (float)(48.0 + 15.0 * z[4] + 6.0 * w->skill);
    o->base[5] = (float)(62.0 + 14.0 * z[5]);

    /* Outcome from the true model on the components of the last run before close. */
    int last = last_run_before_close(g, o);
    o->last_run = (int16_t)last;
    if (last >= 0)
        components_at(g, index, o, cl_gen_run_day(g, last), (uint64_t)last, o->outcome_components);
    else
        components_at(g, index, o, o->created, NOISE_KEY_CREATION, o->outcome_components);
    double index_score = 0.0;
    for (int i = 0; i < CL_GEN_COMPONENTS; i++)
        index_score += opt->true_weights[i] * o->outcome_components[i];
    double logit = opt->intercept + opt->slope * index_score;
    if (opt->learned_factors) {
        logit += OWNER_SKILL_EFFECT * w->skill;
        if (o->lead_source != LEAD_SOURCE_NULL) logit += lead_source_effect[o->lead_source];
    }
    double p = 1.0 / (1.0 + exp(-logit));
    o->win_probability = (float)p;
    if (cl_gen_rng_uniform(&rng) < p) o->flags |= OPP_WON;

    /* Stage path up to the first close: won deals pass every stage; lost ones (and the
     * first, lost, close of a re-opened deal) stop where they stalled. */
    int won_path = (o->flags & OPP_WON) && !(o->flags & OPP_REOPENED);
    int max_stage = 4;
    if (!won_path) {
        double u = cl_gen_rng_uniform(&rng), acc = 0.0;
        for (max_stage = 0; max_stage < 4; max_stage++) {
            acc += lost_stage_share[max_stage];
            if (u < acc) break;
        }
    }
    o->max_stage = (uint8_t)max_stage;
    int32_t span = o->first_close - o->created;
    o->stage_entry[0] = 0;
    for (int k = 1; k <= max_stage; k++) {
        double at = span * (k + 0.8 * (cl_gen_rng_uniform(&rng) - 0.5)) / (max_stage + 1);
        int32_t e = (int32_t)clamp(floor(at), o->stage_entry[k - 1], span - 1);
        o->stage_entry[k] = (uint16_t)e;
    }
}

static int build_ids(cl_gen *g);

int cl_gen_create(const cl_gen_options *opt, cl_gen **out, char *err, size_t errlen)
{
    *out = NULL;
    int rc = validate(opt, err, errlen);
    if (rc != CL_OK) return rc;
    cl_gen *g = calloc(1, sizeof *g);
    if (!g) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    g->opt = *opt;
    g->end_day = add_months(opt->start_day, opt->months);
    g->horizon_days = g->end_day - opt->start_day;
    g->run_count = (g->horizon_days + opt->run_interval_days - 1) / opt->run_interval_days;
    g->counts.opportunities = opt->opportunities;
    g->counts.accounts =
        opt->accounts ? opt->accounts : (opt->opportunities / 5 > 0 ? opt->opportunities / 5 : 1);
    g->counts.owners =
        opt->owners ? opt->owners : (opt->opportunities / 250 > 3 ? opt->opportunities / 250 : 3);
    g->counts.runs = g->run_count;
    for (int i = 0; i < 3; i++) /* a seed-specific block of ids, like a separate org */
        g->id_base[i] = key3(opt->seed, DOMAIN_IDS, (uint64_t)i) % 1000000000000000ull;

    g->accounts = calloc((size_t)g->counts.accounts, sizeof *g->accounts);
    g->owners = calloc((size_t)g->counts.owners, sizeof *g->owners);
    g->opps = calloc((size_t)opt->opportunities, sizeof *g->opps);
    if (!g->accounts || !g->owners || !g->opps) {
        cl_gen_free(g);
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory for %lld opportunities",
                         (long long)opt->opportunities);
    }
    cl_gen_rng rng;
    for (int64_t i = 0; i < g->counts.accounts; i++) {
        account_rec *a = &g->accounts[i];
        stream(&rng, opt->seed, DOMAIN_ACCOUNT, (uint64_t)i);
        a->segment = (uint8_t)rng_pick(&rng, segments, SEGMENT_COUNT);
        a->region = (uint8_t)rng_pick(&rng, regions, REGION_COUNT);
        a->industry = (uint8_t)rng_pick(&rng, industries, INDUSTRY_COUNT);
        a->fit = (float)rng_normal(&rng);
        a->product_mix = (float)rng_normal(&rng);
        a->upsell = (float)rng_normal(&rng);
        double score = 50.0 + 15.0 * a->fit + 5.0 * rng_normal(&rng);
        a->account_score = cl_gen_rng_uniform(&rng) < 0.03
                               ? (int8_t)-1 /* new accounts are not scored yet */
                               : (int8_t)clamp(floor(score + 0.5), 0.0, 100.0);
    }
    for (int64_t i = 0; i < g->counts.owners; i++) {
        stream(&rng, opt->seed, DOMAIN_OWNER, (uint64_t)i);
        g->owners[i].region = (uint8_t)rng_pick(&rng, regions, REGION_COUNT);
        g->owners[i].skill = (float)rng_normal(&rng);
    }
    for (int64_t i = 0; i < opt->opportunities; i++)
        generate_opportunity(g, i);
    if (build_ids(g) != CL_OK) {
        cl_gen_free(g);
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory for ids");
    }

    /* Counts as the files will show them at the end of the history. */
    cl_gen_counts *c = &g->counts;
    for (int64_t i = 0; i < opt->opportunities; i++) {
        const opp_rec *o = &g->opps[i];
        int32_t end = g->end_day;
        int first =
            (o->created - opt->start_day + opt->run_interval_days - 1) / opt->run_interval_days;
        for (int k = first; k < g->run_count; k++) {
            int32_t day = cl_gen_run_day(g, k);
            if (day >= o->close) break;
            c->snapshots += is_open(o, day);
        }
        c->record_versions++; /* the first close, or the open state at the end */
        if (o->first_close < end && (o->flags & OPP_REOPENED) && o->reopen < end) {
            c->reopened++;
            c->record_versions++;
        }
        if (o->close >= end) {
            c->open_at_end++;
            continue;
        }
        if ((o->flags & OPP_REOPENED)) c->record_versions++; /* the final close */
        if ((o->flags & OPP_DELETED) && o->deleted < end) {
            c->deleted++;
            c->record_versions++;
            continue;
        }
        if (o->flags & OPP_WON)
            c->closed_won++;
        else
            c->closed_lost++;
        if (o->last_run < 0) c->unscored++;
    }
    *out = g;
    return CL_OK;
}

void cl_gen_free(cl_gen *g)
{
    if (!g) return;
    free(g->accounts);
    free(g->owners);
    free(g->opps);
    for (int i = 0; i < 3; i++)
        free(g->ids[i]);
    free(g);
}

int cl_gen_opportunity(const cl_gen *g, int64_t index, cl_gen_opportunity_info *out)
{
    if (index < 0 || index >= g->opt.opportunities) return CL_EINVAL;
    const opp_rec *o = &g->opps[index];
    out->created_day = o->created;
    out->first_close_day = o->first_close;
    out->reopen_day = (o->flags & OPP_REOPENED) ? o->reopen : -1;
    out->close_day = o->close;
    out->delete_day = (o->flags & OPP_DELETED) ? o->deleted : -1;
    out->won = (o->flags & OPP_WON) != 0;
    out->last_run = o->last_run;
    memcpy(out->components, o->outcome_components, sizeof out->components);
    out->win_probability = o->win_probability;
    return CL_OK;
}

int cl_gen_snapshot_at(const cl_gen *g, int64_t index, int run, cl_gen_snapshot *out)
{
    if (index < 0 || index >= g->opt.opportunities || run < 0 || run >= g->run_count) return 0;
    const opp_rec *o = &g->opps[index];
    int32_t day = cl_gen_run_day(g, run);
    if (!is_open(o, day)) return 0;
    int32_t entered;
    out->run_day = day;
    out->stage = stage_at(o, day, &entered);
    out->days_in_stage = day - entered;
    out->expected_close_day = expected_close_at(o, day);
    components_at(g, index, o, day, (uint64_t)run, out->components);
    out->opportunity_score_hundredths = score_hundredths(out->components);
    return 1;
}

/* ---- Salesforce ids ---------------------------------------------------------------- */

void cl_gen_salesforce_id(const char *prefix, uint64_t number, char out[19])
{
    /* Digits in ASCII order, so ids sort like the numbers they encode. */
    static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    static const char checksum_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    for (int i = 0; i < 3; i++)
        out[i] = prefix[i];
    for (int i = 14; i >= 3; i--) {
        out[i] = digits[number % 62];
        number /= 62;
    }
    /* Case-safety suffix: for each 5-character chunk, a bit per upper-case letter. */
    for (int chunk = 0; chunk < 3; chunk++) {
        unsigned bits = 0;
        for (int j = 0; j < 5; j++) {
            char ch = out[chunk * 5 + j];
            if (ch >= 'A' && ch <= 'Z') bits |= 1u << j;
        }
        out[15 + chunk] = checksum_chars[bits];
    }
    out[18] = '\0';
}

enum { ID_ACCOUNT = 0, ID_USER, ID_OPPORTUNITY };
static const char *const id_prefix[3] = {"001", "005", "006"};

static void entity_id(const cl_gen *g, int kind, int64_t index, char out[19])
{
    memcpy(out, g->ids[kind][index], 19);
}

static int build_ids(cl_gen *g)
{
    const int64_t count[3] = {g->counts.accounts, g->counts.owners, g->counts.opportunities};
    for (int kind = 0; kind < 3; kind++) {
        g->ids[kind] = malloc((size_t)count[kind] * sizeof *g->ids[kind]);
        if (!g->ids[kind]) return CL_ENOMEM;
        for (int64_t i = 0; i < count[kind]; i++)
            cl_gen_salesforce_id(id_prefix[kind], g->id_base[kind] + (uint64_t)i + 1,
                                 g->ids[kind][i]);
    }
    return CL_OK;
}

/* ---- buffered output ----------------------------------------------------------------- */

#define OUT_BUFSIZE (1u << 16)
#define PATH_CAP 4096

typedef struct {
    FILE *f;
    char tmp_path[PATH_CAP], path[PATH_CAP];
    size_t len;
    int error; /* sticky errno of the first failed write */
    char buf[OUT_BUFSIZE];
} out_file;

static int out_open(out_file *o, const char *dir, const char *name, char *err, size_t errlen)
{
    int n1 = snprintf(o->path, sizeof o->path, "%s/%s", dir, name);
    int n2 = snprintf(o->tmp_path, sizeof o->tmp_path, "%s/.%s.tmp", dir, name);
    if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof o->path || (size_t)n2 >= sizeof o->tmp_path)
        return cl_seterr(err, errlen, CL_EINVAL, "output path %s/%s is too long", dir, name);
    o->len = 0;
    o->error = 0;
    o->f = fopen(o->tmp_path, "wb");
    if (!o->f)
        return cl_seterr(err, errlen, CL_EIO, "cannot create %s: %s", o->tmp_path, strerror(errno));
    return CL_OK;
}

static void out_flush(out_file *o)
{
    if (o->len && !o->error && fwrite(o->buf, 1, o->len, o->f) != o->len)
        o->error = errno ? errno : EIO;
    o->len = 0;
}

static inline char *out_reserve(out_file *o, size_t n)
{
    if (o->len + n > OUT_BUFSIZE) out_flush(o);
    return o->buf + o->len;
}

static void out_mem(out_file *o, const char *s, size_t n)
{
    if (n > OUT_BUFSIZE / 2) {
        out_flush(o);
        if (!o->error && fwrite(s, 1, n, o->f) != n) o->error = errno ? errno : EIO;
        return;
    }
    memcpy(out_reserve(o, n), s, n);
    o->len += n;
}

static void out_str(out_file *o, const char *s)
{
    out_mem(o, s, strlen(s));
}

static void out_char(out_file *o, char ch)
{
    *out_reserve(o, 1) = ch;
    o->len++;
}

static void out_u64(out_file *o, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    char *p = out_reserve(o, (size_t)n);
    for (int i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    o->len += (size_t)n;
}

static void out_i64(out_file *o, int64_t v)
{
    if (v < 0) {
        out_char(o, '-');
        out_u64(o, (uint64_t)(-(v + 1)) + 1);
    } else {
        out_u64(o, (uint64_t)v);
    }
}

/* v / 100 with exactly two decimals ("57.35", "-0.05"). */
static void out_hundredths(out_file *o, int64_t v)
{
    if (v < 0) {
        out_char(o, '-');
        v = -v;
    }
    out_u64(o, (uint64_t)(v / 100));
    char *p = out_reserve(o, 3);
    p[0] = '.';
    p[1] = (char)('0' + (v % 100) / 10);
    p[2] = (char)('0' + v % 10);
    o->len += 3;
}

static void put_digits(char *p, unsigned v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

static void out_date(out_file *o, int32_t day)
{
    int y;
    unsigned m, d;
    civil_from_days(day, &y, &m, &d);
    char *p = out_reserve(o, 10);
    put_digits(p, (unsigned)y, 4);
    p[4] = '-';
    put_digits(p + 5, m, 2);
    p[7] = '-';
    put_digits(p + 8, d, 2);
    o->len += 10;
}

/* "2025-03-03T06:00:00.000Z", or with salesforce_zone "...000+0000". */
static void out_timestamp(out_file *o, int32_t day, int32_t ms_of_day, int salesforce_zone)
{
    out_date(o, day);
    char *p = out_reserve(o, 18);
    p[0] = 'T';
    put_digits(p + 1, (unsigned)(ms_of_day / 3600000), 2);
    p[3] = ':';
    put_digits(p + 4, (unsigned)(ms_of_day / 60000 % 60), 2);
    p[6] = ':';
    put_digits(p + 7, (unsigned)(ms_of_day / 1000 % 60), 2);
    p[9] = '.';
    put_digits(p + 10, (unsigned)(ms_of_day % 1000), 3);
    if (salesforce_zone) {
        memcpy(p + 13, "+0000", 5);
        o->len += 18;
    } else {
        p[13] = 'Z';
        o->len += 14;
    }
}

/* RFC 4180: quote a field only when it holds a comma, quote or line break. */
static void out_csv_field(out_file *o, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        out_str(o, s);
        return;
    }
    out_char(o, '"');
    for (; *s; s++) {
        if (*s == '"') out_char(o, '"');
        out_char(o, *s);
    }
    out_char(o, '"');
}

static void out_json_string(out_file *o, const char *s)
{
    out_char(o, '"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out_char(o, '\\');
            out_char(o, (char)ch);
        } else if (ch < 0x20) {
            static const char hex[] = "0123456789abcdef";
            out_str(o, "\\u00");
            out_char(o, hex[ch >> 4]);
            out_char(o, hex[ch & 15]);
        } else {
            out_char(o, (char)ch);
        }
    }
    out_char(o, '"');
}

static int out_close(out_file *o, char *err, size_t errlen)
{
    out_flush(o);
    int write_error = o->error;
    if (fclose(o->f) != 0 && !write_error) write_error = errno ? errno : EIO;
    o->f = NULL;
    if (write_error) {
        unlink(o->tmp_path);
        return cl_seterr(err, errlen, CL_EIO, "writing %s failed: %s", o->tmp_path,
                         strerror(write_error));
    }
    if (rename(o->tmp_path, o->path) != 0) {
        int e = errno;
        unlink(o->tmp_path);
        return cl_seterr(err, errlen, CL_EIO, "cannot rename %s to %s: %s", o->tmp_path, o->path,
                         strerror(e));
    }
    return CL_OK;
}

static void out_abort(out_file *o)
{
    if (o->f) {
        fclose(o->f);
        o->f = NULL;
        unlink(o->tmp_path);
    }
}

/* ---- the files ------------------------------------------------------------------------- */

static const char *const run_header[] = {
    "run_id",
    "snapshot_time",
    "opportunity_id",
    "account_id",
    "owner_id",
    "stage",
    "amount",
    "currency",
    "created_date",
    "expected_close_date",
    "days_in_stage",
    "segment",
    "region",
    "product",
    "lead_source",
    "type",
    "speed_to_close",
    "largest_deal",
    "product_mix",
    "upsell_instances",
    "win_rate",
    "recency",
    "opportunity_score",
    "account_score",
};
#define RUN_COLUMNS (sizeof run_header / sizeof run_header[0])
#define SNAPSHOT_MS_OF_DAY (6 * 3600 * 1000)

/* Writers for one snapshot row: one function per format, fields in header order. A
 * NULL string or negative number means null (empty cell / JSON null). */
typedef struct {
    out_file *o;
    int jsonl;
    size_t column;
} row_writer;

static void row_begin(row_writer *w)
{
    w->column = 0;
    if (w->jsonl) out_char(w->o, '{');
}

static void row_key(row_writer *w)
{
    if (w->jsonl) {
        if (w->column) out_char(w->o, ',');
        out_char(w->o, '"');
        out_str(w->o, run_header[w->column]);
        out_str(w->o, "\":");
    } else if (w->column) {
        out_char(w->o, ',');
    }
    w->column++;
}

static void row_string(row_writer *w, const char *s)
{
    row_key(w);
    if (!s) {
        if (w->jsonl) out_str(w->o, "null");
    } else if (w->jsonl) {
        out_json_string(w->o, s);
    } else {
        out_csv_field(w->o, s);
    }
}

static void row_date(row_writer *w, int32_t day)
{
    row_key(w);
    if (w->jsonl) out_char(w->o, '"');
    out_date(w->o, day);
    if (w->jsonl) out_char(w->o, '"');
}

static void row_int(row_writer *w, int64_t v)
{
    row_key(w);
    if (v >= 0)
        out_i64(w->o, v);
    else if (w->jsonl)
        out_str(w->o, "null");
}

static void row_hundredths(row_writer *w, int64_t v)
{
    row_key(w);
    out_hundredths(w->o, v);
}

static void row_end(row_writer *w)
{
    if (w->jsonl) out_char(w->o, '}');
    out_char(w->o, '\n');
}

/* Writes run `run` for the candidates in `active` (every opportunity that may be open
 * that day, in creation order). */
static int write_run(cl_gen *g, const char *runs_dir, int run, const uint32_t *active,
                     size_t active_count, out_file *o, char *err, size_t errlen)
{
    const cl_gen_options *opt = &g->opt;
    int32_t day = cl_gen_run_day(g, run);
    char run_id[24], name[64];
    int y;
    unsigned m, d;
    civil_from_days(day, &y, &m, &d);
    snprintf(run_id, sizeof run_id, "run-%04d-%02u-%02u", y, m, d);
    snprintf(name, sizeof name, "%s.%s", run_id,
             opt->format == CL_GEN_FORMAT_JSONL ? "jsonl" : "csv");
    int rc = out_open(o, runs_dir, name, err, errlen);
    if (rc != CL_OK) return rc;
    row_writer w = {.o = o, .jsonl = opt->format == CL_GEN_FORMAT_JSONL};
    if (!w.jsonl) {
        for (size_t i = 0; i < RUN_COLUMNS; i++) {
            if (i) out_char(o, ',');
            out_str(o, run_header[i]);
        }
        out_char(o, '\n');
    }
    char opp_id[19], account_id[19], owner_id[19];
    for (size_t j = 0; j < active_count; j++) {
        uint32_t i = active[j];
        const opp_rec *rec = &g->opps[i];
        cl_gen_snapshot s;
        if (!is_open(rec, day) || !cl_gen_snapshot_at(g, i, run, &s)) continue;
        const account_rec *a = &g->accounts[rec->account];
        entity_id(g, ID_OPPORTUNITY, i, opp_id);
        entity_id(g, ID_ACCOUNT, rec->account, account_id);
        entity_id(g, ID_USER, rec->owner, owner_id);
        row_begin(&w);
        row_string(&w, run_id);
        row_key(&w);
        if (w.jsonl) out_char(o, '"');
        out_timestamp(o, day, SNAPSHOT_MS_OF_DAY, 0);
        if (w.jsonl) out_char(o, '"');
        row_string(&w, opp_id);
        row_string(&w, account_id);
        row_string(&w, owner_id);
        row_string(&w, cl_gen_stage_names[s.stage]);
        row_hundredths(&w, (int64_t)rec->amount * 100);
        row_string(&w, opt->currency);
        row_date(&w, rec->created);
        row_date(&w, s.expected_close_day);
        row_int(&w, s.days_in_stage);
        row_string(&w, segments[a->segment].name);
        row_string(&w, regions[a->region].name);
        row_string(&w, products[rec->product].name);
        row_string(&w, rec->lead_source == LEAD_SOURCE_NULL ? NULL
                                                            : lead_sources[rec->lead_source].name);
        row_string(&w, types[rec->type].name);
        for (int c = 0; c < CL_GEN_COMPONENTS; c++)
            row_int(&w, s.components[c]);
        row_hundredths(&w, s.opportunity_score_hundredths);
        row_int(&w, a->account_score);
        row_end(&w);
    }
    return out_close(o, err, errlen);
}

/* Milliseconds into the working day (13:00-23:00 UTC) at which a record changed;
 * hashed so each (opportunity, event) has a stable time. */
static int32_t event_ms(const cl_gen *g, int64_t index, unsigned event)
{
    uint64_t h = mix64(key3(g->opt.seed, DOMAIN_TIME_OF_DAY, (uint64_t)index) ^ event);
    return 13 * 3600000 + (int32_t)(h % (10ull * 3600000ull));
}

enum { EVENT_CREATED = 0, EVENT_FIRST_CLOSE, EVENT_REOPEN, EVENT_CLOSE, EVENT_DELETE, EVENT_STAGE };

/* One version of an Opportunity record, as Salesforce would return it. */
typedef struct {
    int64_t modstamp_ms; /* SystemModstamp, ms since the epoch */
    uint32_t index;      /* opportunity */
    uint8_t event;
} record_version;

/* ORDER BY SystemModstamp, Id, as the outcomes worker's SOQL does (ids sort like the
 * indexes they encode). */
static int compare_versions(const void *pa, const void *pb)
{
    const record_version *a = pa, *b = pb;
    if (a->modstamp_ms != b->modstamp_ms) return a->modstamp_ms < b->modstamp_ms ? -1 : 1;
    if (a->index != b->index) return a->index < b->index ? -1 : 1;
    return a->event < b->event ? -1 : a->event > b->event;
}

static void write_salesforce_datetime(out_file *o, int64_t ms)
{
    out_char(o, '"');
    out_timestamp(o, (int32_t)(ms / 86400000), (int32_t)(ms % 86400000), 1);
    out_char(o, '"');
}

static int64_t event_time(const cl_gen *g, int64_t index, int32_t day, unsigned event)
{
    return (int64_t)day * 86400000 + event_ms(g, index, event);
}

static void write_record_version(cl_gen *g, out_file *o, const record_version *v)
{
    const cl_gen_options *opt = &g->opt;
    const opp_rec *rec = &g->opps[v->index];
    char opp_id[19], account_id[19], owner_id[19];
    entity_id(g, ID_OPPORTUNITY, v->index, opp_id);
    entity_id(g, ID_ACCOUNT, rec->account, account_id);
    entity_id(g, ID_USER, rec->owner, owner_id);
    int stage, closed = 1, won = 0, deleted = 0;
    int32_t close_date;
    switch (v->event) {
    case EVENT_FIRST_CLOSE: /* a re-opened deal's first close was a loss */
        won = (rec->flags & OPP_WON) && !(rec->flags & OPP_REOPENED);
        stage = won ? CL_GEN_CLOSED_WON : CL_GEN_CLOSED_LOST;
        close_date = rec->first_close;
        break;
    case EVENT_REOPEN:
        stage = CL_GEN_NEGOTIATION;
        closed = 0;
        close_date = expected_close_at(rec, rec->reopen);
        break;
    case EVENT_CLOSE:
    case EVENT_DELETE:
        won = (rec->flags & OPP_WON) != 0;
        stage = won ? CL_GEN_CLOSED_WON : CL_GEN_CLOSED_LOST;
        close_date = rec->close;
        deleted = v->event == EVENT_DELETE;
        break;
    default: { /* EVENT_STAGE: still open at the end, as last changed */
        int32_t entered;
        stage = stage_at(rec, g->end_day - 1, &entered);
        closed = 0;
        close_date = expected_close_at(rec, g->end_day - 1);
        break;
    }
    }
    out_str(o, "{\"attributes\":{\"type\":\"Opportunity\",\"url\":"
               "\"/services/data/v60.0/sobjects/Opportunity/");
    out_str(o, opp_id);
    out_str(o, "\"},\"Id\":\"");
    out_str(o, opp_id);
    out_str(o, "\",\"AccountId\":\"");
    out_str(o, account_id);
    out_str(o, "\",\"OwnerId\":\"");
    out_str(o, owner_id);
    out_str(o, "\",\"StageName\":");
    out_json_string(o, cl_gen_stage_names[stage]);
    out_str(o, closed ? ",\"IsClosed\":true" : ",\"IsClosed\":false");
    out_str(o, won ? ",\"IsWon\":true" : ",\"IsWon\":false");
    out_str(o, deleted ? ",\"IsDeleted\":true" : ",\"IsDeleted\":false");
    out_str(o, ",\"CloseDate\":\"");
    out_date(o, close_date);
    out_str(o, "\",\"Amount\":");
    out_hundredths(o, (int64_t)rec->amount * 100);
    out_str(o, ",\"CreatedDate\":");
    write_salesforce_datetime(o, event_time(g, v->index, rec->created, EVENT_CREATED));
    out_str(o, ",\"SystemModstamp\":");
    write_salesforce_datetime(o, v->modstamp_ms);
    out_str(o, ",\"LastModifiedDate\":");
    write_salesforce_datetime(o, v->modstamp_ms);
    out_str(o, ",\"Type\":");
    out_json_string(o, types[rec->type].name);
    out_str(o, ",\"LeadSource\":");
    if (rec->lead_source == LEAD_SOURCE_NULL)
        out_str(o, "null");
    else
        out_json_string(o, lead_sources[rec->lead_source].name);
    out_str(o, ",\"CurrencyIsoCode\":");
    out_json_string(o, opt->currency);
    out_str(o, "}\n");
}

static int write_record_versions(cl_gen *g, const char *dir, out_file *o, char *err, size_t errlen)
{
    size_t cap = (size_t)g->counts.record_versions, n = 0;
    record_version *versions = malloc((cap ? cap : 1) * sizeof *versions);
    if (!versions) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory for record versions");
    int32_t end = g->end_day;
    for (int64_t i = 0; i < g->opt.opportunities; i++) {
        const opp_rec *r = &g->opps[i];
#define ADD_VERSION(ms_, event_)                                                                   \
    do {                                                                                           \
        if (n < cap) versions[n] = (record_version){(ms_), (uint32_t)i, (event_)};                 \
        n++;                                                                                       \
    } while (0)
        if (r->first_close >= end) { /* open all along: its last change is a stage move */
            int32_t entered;
            stage_at(r, end - 1, &entered);
            /* A stage entered on the creation day cannot change before the record exists. */
            int64_t created_ms = event_time(g, i, r->created, EVENT_CREATED);
            int64_t ms = event_time(g, i, entered, EVENT_STAGE);
            ADD_VERSION(ms > created_ms ? ms : created_ms, EVENT_STAGE);
            continue;
        }
        unsigned first = (r->flags & OPP_REOPENED) ? EVENT_FIRST_CLOSE : EVENT_CLOSE;
        ADD_VERSION(event_time(g, i, r->first_close, first), first);
        if ((r->flags & OPP_REOPENED) && r->reopen < end) {
            ADD_VERSION(event_time(g, i, r->reopen, EVENT_REOPEN), EVENT_REOPEN);
            if (r->close < end) ADD_VERSION(event_time(g, i, r->close, EVENT_CLOSE), EVENT_CLOSE);
        }
        if (r->close < end && (r->flags & OPP_DELETED) && r->deleted < end)
            ADD_VERSION(event_time(g, i, r->deleted, EVENT_DELETE), EVENT_DELETE);
#undef ADD_VERSION
    }
    /* The counting pass in cl_gen_create and this pass must agree exactly. */
    if (n != cap) {
        free(versions);
        return cl_seterr(err, errlen, CL_ERR, "internal error: %zu record versions, expected %zu",
                         n, cap);
    }
    qsort(versions, n, sizeof *versions, compare_versions);
    int rc = out_open(o, dir, "opportunities.jsonl", err, errlen);
    if (rc == CL_OK) {
        for (size_t i = 0; i < n; i++)
            write_record_version(g, o, &versions[i]);
        rc = out_close(o, err, errlen);
    }
    free(versions);
    return rc;
}

typedef struct {
    int32_t close;
    uint32_t index;
} closed_key;

static int compare_closed(const void *pa, const void *pb)
{
    const closed_key *a = pa, *b = pb;
    if (a->close != b->close) return a->close < b->close ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* The Salesforce report a team without API access would export: one row per
 * opportunity closed (and not deleted) at the end of the history, final state only. */
static int write_closed_export(cl_gen *g, const char *dir, out_file *o, char *err, size_t errlen)
{
    size_t cap = (size_t)(g->counts.closed_won + g->counts.closed_lost), n = 0;
    closed_key *closed = malloc((cap ? cap : 1) * sizeof *closed);
    if (!closed) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory for closed export");
    for (int64_t i = 0; i < g->opt.opportunities; i++) {
        const opp_rec *r = &g->opps[i];
        if (r->close >= g->end_day) continue;
        if ((r->flags & OPP_DELETED) && r->deleted < g->end_day) continue;
        if (n < cap) closed[n] = (closed_key){r->close, (uint32_t)i};
        n++;
    }
    if (n != cap) {
        free(closed);
        return cl_seterr(err, errlen, CL_ERR, "internal error: %zu closed, expected %zu", n, cap);
    }
    qsort(closed, n, sizeof *closed, compare_closed);
    int rc = out_open(o, dir, "closed_opportunities.csv", err, errlen);
    if (rc != CL_OK) {
        free(closed);
        return rc;
    }
    out_str(o, "Id,AccountId,OwnerId,StageName,IsClosed,IsWon,IsDeleted,CloseDate,Amount,"
               "CreatedDate,SystemModstamp,LastModifiedDate,Type,LeadSource,CurrencyIsoCode\n");
    char id[19];
    for (size_t k = 0; k < n; k++) {
        uint32_t i = closed[k].index;
        const opp_rec *r = &g->opps[i];
        int won = (r->flags & OPP_WON) != 0;
        int64_t modstamp = event_time(g, i, r->close, EVENT_CLOSE);
        entity_id(g, ID_OPPORTUNITY, i, id);
        out_str(o, id);
        out_char(o, ',');
        entity_id(g, ID_ACCOUNT, r->account, id);
        out_str(o, id);
        out_char(o, ',');
        entity_id(g, ID_USER, r->owner, id);
        out_str(o, id);
        out_char(o, ',');
        out_csv_field(o, cl_gen_stage_names[won ? CL_GEN_CLOSED_WON : CL_GEN_CLOSED_LOST]);
        out_str(o, won ? ",true,true,false," : ",true,false,false,");
        out_date(o, r->close);
        out_char(o, ',');
        out_hundredths(o, (int64_t)r->amount * 100);
        out_char(o, ',');
        out_timestamp(o, r->created, event_ms(g, i, EVENT_CREATED), 1);
        out_char(o, ',');
        out_timestamp(o, (int32_t)(modstamp / 86400000), (int32_t)(modstamp % 86400000), 1);
        out_char(o, ',');
        out_timestamp(o, (int32_t)(modstamp / 86400000), (int32_t)(modstamp % 86400000), 1);
        out_char(o, ',');
        out_csv_field(o, types[r->type].name);
        out_char(o, ',');
        if (r->lead_source != LEAD_SOURCE_NULL) out_csv_field(o, lead_sources[r->lead_source].name);
        out_char(o, ',');
        out_str(o, g->opt.currency);
        out_char(o, '\n');
    }
    free(closed);
    return out_close(o, err, errlen);
}

static int write_reference_data(cl_gen *g, const char *dir, out_file *o, char *err, size_t errlen)
{
    char id[19];
    int rc = out_open(o, dir, "accounts.csv", err, errlen);
    if (rc != CL_OK) return rc;
    out_str(o, "Id,Name,Industry,Segment,Region,AccountScore\n");
    for (int64_t i = 0; i < g->counts.accounts; i++) {
        const account_rec *a = &g->accounts[i];
        entity_id(g, ID_ACCOUNT, i, id);
        out_str(o, id);
        out_str(o, ",Account ");
        out_i64(o, i + 1);
        out_char(o, ',');
        out_csv_field(o, industries[a->industry].name);
        out_char(o, ',');
        out_str(o, segments[a->segment].name);
        out_char(o, ',');
        out_str(o, regions[a->region].name);
        out_char(o, ',');
        if (a->account_score >= 0) out_i64(o, a->account_score);
        out_char(o, '\n');
    }
    rc = out_close(o, err, errlen);
    if (rc != CL_OK) return rc;
    rc = out_open(o, dir, "users.csv", err, errlen);
    if (rc != CL_OK) return rc;
    out_str(o, "Id,Name,Region\n");
    for (int64_t i = 0; i < g->counts.owners; i++) {
        entity_id(g, ID_USER, i, id);
        out_str(o, id);
        out_str(o, ",Sales Rep ");
        out_i64(o, i + 1);
        out_char(o, ',');
        out_str(o, regions[g->owners[i].region].name);
        out_char(o, '\n');
    }
    return out_close(o, err, errlen);
}

static int json_set(json_t *obj, const char *key, json_t *value)
{
    return value && json_object_set_new(obj, key, value) == 0 ? 0 : -1;
}

static json_t *weights_json(const double *w)
{
    json_t *obj = json_object();
    for (int i = 0; obj && i < CL_GEN_COMPONENTS; i++)
        if (json_set(obj, cl_gen_component_names[i], json_real(w[i])) != 0) {
            json_decref(obj);
            return NULL;
        }
    return obj;
}

static json_t *truth_json(const cl_gen *g)
{
    const cl_gen_options *opt = &g->opt;
    const cl_gen_counts *c = &g->counts;
    char start[11], end[11];
    int y;
    unsigned m, d;
    civil_from_days(opt->start_day, &y, &m, &d);
    snprintf(start, sizeof start, "%04d-%02u-%02u", y, m, d);
    civil_from_days(g->end_day, &y, &m, &d);
    snprintf(end, sizeof end, "%04d-%02u-%02u", y, m, d);
    double seed_weights[CL_GEN_COMPONENTS];
    for (int i = 0; i < CL_GEN_COMPONENTS; i++)
        seed_weights[i] = cl_gen_seed_weight_hundredths[i] / 100.0;

    json_t *root = json_object(), *options = json_object(), *model = json_object(),
           *factors = json_object(), *counts = json_object();
    int bad = !root || !options || !model || !factors || !counts;
    bad |= json_set(root, "generator", json_string("closedloop-gen"));
    bad |= json_set(root, "seed", json_integer((json_int_t)opt->seed));
    bad |= json_set(options, "start_date", json_string(start));
    bad |= json_set(options, "end_date", json_string(end));
    bad |= json_set(options, "months", json_integer(opt->months));
    bad |= json_set(options, "opportunities", json_integer(opt->opportunities));
    bad |= json_set(options, "run_interval_days", json_integer(opt->run_interval_days));
    bad |= json_set(options, "format",
                    json_string(opt->format == CL_GEN_FORMAT_JSONL ? "jsonl" : "csv"));
    bad |= json_set(options, "learned_factors", json_boolean(opt->learned_factors));
    bad |= json_set(options, "reopen_rate", json_real(opt->reopen_rate));
    bad |= json_set(options, "delete_rate", json_real(opt->delete_rate));
    bad |= json_set(options, "currency", json_string(opt->currency));
    bad |= json_set(model, "name", json_string("opportunity_score"));
    bad |= json_set(model, "formula",
                    json_string("P(won) = 1 / (1 + exp(-(intercept + slope * "
                                "sum_i true_weights[i] * component_i)))"));
    bad |= json_set(model, "components_at",
                    json_string("last_snapshot_before_close (creation day if none)"));
    bad |= json_set(model, "true_weights", weights_json(opt->true_weights));
    bad |= json_set(model, "intercept", json_real(opt->intercept));
    bad |= json_set(model, "slope", json_real(opt->slope));
    bad |= json_set(model, "seed_weights", weights_json(seed_weights));
    bad |= json_set(root, "model", model);
    bad |= json_set(factors, "enabled", json_boolean(opt->learned_factors));
    if (opt->learned_factors && !bad) {
        json_t *sources = json_object(), *owners = json_object();
        bad |= !sources || !owners;
        for (int i = 0; !bad && i < LEAD_SOURCE_COUNT; i++)
            bad |= json_set(sources, lead_sources[i].name, json_real(lead_source_effect[i]));
        char id[19];
        for (int64_t i = 0; !bad && i < c->owners; i++) {
            entity_id(g, ID_USER, i, id);
            bad |= json_set(owners, id, json_real(OWNER_SKILL_EFFECT * g->owners[i].skill));
        }
        bad |= json_set(factors, "lead_source_logit_effects", sources);
        bad |= json_set(factors, "owner_logit_effects", owners);
    }
    bad |= json_set(root, "learned_factors", factors);
    bad |= json_set(root, "options", options);
    bad |= json_set(counts, "accounts", json_integer(c->accounts));
    bad |= json_set(counts, "owners", json_integer(c->owners));
    bad |= json_set(counts, "opportunities", json_integer(c->opportunities));
    bad |= json_set(counts, "runs", json_integer(c->runs));
    bad |= json_set(counts, "snapshots", json_integer(c->snapshots));
    bad |= json_set(counts, "closed_won", json_integer(c->closed_won));
    bad |= json_set(counts, "closed_lost", json_integer(c->closed_lost));
    bad |= json_set(counts, "deleted", json_integer(c->deleted));
    bad |= json_set(counts, "reopened", json_integer(c->reopened));
    bad |= json_set(counts, "open_at_end", json_integer(c->open_at_end));
    bad |= json_set(counts, "unscored", json_integer(c->unscored));
    bad |= json_set(counts, "record_versions", json_integer(c->record_versions));
    bad |= json_set(root, "counts", counts);
    if (bad) {
        json_decref(root);
        return NULL;
    }
    return root;
}

static int write_truth(const cl_gen *g, const char *dir, out_file *o, char *err, size_t errlen)
{
    json_t *truth = truth_json(g);
    if (!truth) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory building truth.json");
    char *text = json_dumps(truth, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(truth);
    if (!text) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory writing truth.json");
    int rc = out_open(o, dir, "truth.json", err, errlen);
    if (rc == CL_OK) {
        out_str(o, text);
        out_char(o, '\n');
        rc = out_close(o, err, errlen);
    }
    free(text);
    return rc;
}

static int make_dir(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0777) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return CL_OK;
        return cl_seterr(err, errlen, CL_EIO, "%s exists and is not a directory", path);
    }
    return cl_seterr(err, errlen, CL_EIO, "cannot create directory %s: %s", path, strerror(errno));
}

/* With --force: drop run files of an earlier history so the directory holds exactly one. */
static int remove_stale_runs(const char *runs_dir, char *err, size_t errlen)
{
    DIR *dir = opendir(runs_dir);
    if (!dir)
        return cl_seterr(err, errlen, CL_EIO, "cannot list %s: %s", runs_dir, strerror(errno));
    struct dirent *e;
    int rc = CL_OK;
    while (rc == CL_OK && (e = readdir(dir)) != NULL) {
        size_t len = strlen(e->d_name);
        int is_run = strncmp(e->d_name, "run-", 4) == 0 &&
                     ((len > 4 && strcmp(e->d_name + len - 4, ".csv") == 0) ||
                      (len > 6 && strcmp(e->d_name + len - 6, ".jsonl") == 0));
        if (!is_run) continue;
        char path[PATH_CAP];
        int n = snprintf(path, sizeof path, "%s/%s", runs_dir, e->d_name);
        if (n < 0 || (size_t)n >= sizeof path || unlink(path) != 0)
            rc = cl_seterr(err, errlen, CL_EIO, "cannot remove stale run file %s/%s", runs_dir,
                           e->d_name);
    }
    closedir(dir);
    return rc;
}

/* Scanning every opportunity for every run would touch the whole history once per run;
 * instead keep the set of opportunities created and not yet finally closed, entering
 * in creation order (a counting sort by creation day) and leaving at their close. */
static int write_runs(cl_gen *g, const char *runs_dir, out_file *o, char *err, size_t errlen)
{
    size_t n = (size_t)g->opt.opportunities, days = (size_t)g->horizon_days;
    uint32_t *order = malloc(n * sizeof *order), *active = malloc(n * sizeof *active);
    size_t *first = calloc(days + 1, sizeof *first);
    if (!order || !active || !first) {
        free(order);
        free(active);
        free(first);
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory for the run index");
    }
    for (size_t i = 0; i < n; i++)
        first[g->opps[i].created - g->opt.start_day + 1]++;
    for (size_t d = 1; d <= days; d++)
        first[d] += first[d - 1];
    for (size_t i = 0; i < n; i++)
        order[first[g->opps[i].created - g->opt.start_day]++] = (uint32_t)i;
    size_t entered = 0, active_count = 0;
    int rc = CL_OK;
    for (int run = 0; rc == CL_OK && run < g->run_count; run++) {
        int32_t day = cl_gen_run_day(g, run);
        while (entered < n && g->opps[order[entered]].created <= day)
            active[active_count++] = order[entered++];
        size_t kept = 0;
        for (size_t j = 0; j < active_count; j++)
            if (g->opps[active[j]].close > day) active[kept++] = active[j];
        active_count = kept;
        rc = write_run(g, runs_dir, run, active, active_count, o, err, errlen);
    }
    free(order);
    free(active);
    free(first);
    return rc;
}

int cl_gen_write(cl_gen *g, const char *out_dir, int force, char *err, size_t errlen)
{
    char runs_dir[PATH_CAP], outcomes_dir[PATH_CAP], truth_path[PATH_CAP];
    int n1 = snprintf(runs_dir, sizeof runs_dir, "%s/runs", out_dir);
    int n2 = snprintf(outcomes_dir, sizeof outcomes_dir, "%s/outcomes", out_dir);
    int n3 = snprintf(truth_path, sizeof truth_path, "%s/truth.json", out_dir);
    if (!*out_dir || n1 < 0 || n2 < 0 || n3 < 0 || (size_t)n1 >= sizeof runs_dir ||
        (size_t)n2 >= sizeof outcomes_dir || (size_t)n3 >= sizeof truth_path - 16)
        return cl_seterr(err, errlen, CL_EINVAL, "output directory '%s' is empty or too long",
                         out_dir);
    if (!force && access(truth_path, F_OK) == 0)
        return cl_seterr(err, errlen, CL_ECONFLICT,
                         "%s already holds a generated history; use --force to replace it",
                         out_dir);
    int rc = make_dir(out_dir, err, errlen);
    if (rc == CL_OK) rc = make_dir(runs_dir, err, errlen);
    if (rc == CL_OK) rc = make_dir(outcomes_dir, err, errlen);
    if (rc == CL_OK && force) {
        /* Remove the old truth first: a crash mid-rewrite must not leave it describing
         * files that no longer match. */
        if (unlink(truth_path) != 0 && errno != ENOENT)
            rc =
                cl_seterr(err, errlen, CL_EIO, "cannot remove %s: %s", truth_path, strerror(errno));
        if (rc == CL_OK) rc = remove_stale_runs(runs_dir, err, errlen);
    }
    if (rc != CL_OK) return rc;

    out_file *o = malloc(sizeof *o);
    if (!o) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory for output buffer");
    o->f = NULL;
    rc = write_reference_data(g, out_dir, o, err, errlen);
    if (rc == CL_OK) rc = write_runs(g, runs_dir, o, err, errlen);
    if (rc == CL_OK) rc = write_closed_export(g, outcomes_dir, o, err, errlen);
    if (rc == CL_OK) rc = write_record_versions(g, outcomes_dir, o, err, errlen);
    if (rc == CL_OK) rc = write_truth(g, out_dir, o, err, errlen);
    out_abort(o);
    free(o);
    return rc;
}
