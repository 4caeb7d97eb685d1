/*
 * avro.c — schemas, canonical form, fingerprints, framing, bounds-checked decoding and
 * default-filling schema resolution on top of avro-c. The contract is in avro.h.
 *
 * Internally every schema is held twice: as avro-c's avro_schema_t (for its generic
 * value classes and binary reader/writer) and as a small tree of `node`s built from the
 * original JSON by this file. The node tree keeps what avro-c throws away (defaults,
 * aliases, enum defaults, full names) and drives the canonical form, the bounds check,
 * JSON conversion and resolution. Both trees come from the same JSON document, so
 * record field order, union branch order and enum symbol order agree: an index in one
 * is an index in the other. That is the invariant everything below relies on.
 */
#include "avro.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Bounds on hostile input. */
#define MAX_SCHEMA_BYTES (4u << 20)    /* one .avsc or registry schema */
#define MAX_JSON_DEPTH 64              /* nesting of a schema document */
#define MAX_VALUE_DEPTH 128            /* nesting of a datum (recursive schemas) */
#define MAX_ITEMS_PER_DATUM (1u << 20) /* array/map items in one datum */
#define MAX_DATUM_BYTES (256u << 20)   /* encoded datum */
#define MAX_WRITERS 64                 /* cached writer schemas per codec */
#define MAX_IDS 1024                   /* cached registry id -> fingerprint per codec */

/* ===================================================================================
 * Schema nodes
 * =================================================================================== */

typedef enum {
    K_NULL,
    K_BOOLEAN,
    K_INT,
    K_LONG,
    K_FLOAT,
    K_DOUBLE,
    K_BYTES,
    K_STRING,
    K_RECORD,
    K_ENUM,
    K_FIXED,
    K_ARRAY,
    K_MAP,
    K_UNION,
} kind;

static const char *const kind_names[] = {"null",   "boolean", "int",    "long",   "float",
                                         "double", "bytes",   "string", "record", "enum",
                                         "fixed",  "array",   "map",    "union"};

typedef struct node node;

typedef struct {
    char *name;
    node *type;
    const json_t *def; /* borrowed from the schema's parsed document; NULL: no default */
    char **aliases;
    size_t naliases;
} field;

struct node {
    kind k;
    int is_error;     /* record declared as "error" (kept for the canonical form) */
    char *fullname;   /* named types */
    const char *name; /* short name, points into fullname */
    char **aliases;   /* full names */
    size_t naliases;
    field *fields;
    size_t nfields;
    char **symbols;
    size_t nsymbols;
    int enum_default; /* index into symbols, or -1 */
    int64_t size;     /* fixed */
    node *items;      /* array items / map values */
    node **branches;
    size_t nbranches;
    int emitted; /* scratch for the canonical-form writer */
};

typedef struct {
    node **v;
    size_t n, cap;
} node_list;

static int node_list_push(node_list *l, node *n)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        node **v = realloc(l->v, cap * sizeof *v);
        if (!v) return CL_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = n;
    return CL_OK;
}

static void free_strings(char **s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(s[i]);
    free(s);
}

static void node_free(node *n)
{
    free(n->fullname);
    free_strings(n->aliases, n->naliases);
    for (size_t i = 0; i < n->nfields; i++) {
        free(n->fields[i].name);
        free_strings(n->fields[i].aliases, n->fields[i].naliases);
    }
    free(n->fields);
    free_strings(n->symbols, n->nsymbols);
    free(n->branches);
    free(n);
}

/* ---- Parser: JSON document -> node tree ------------------------------------------ */

typedef struct {
    node_list all;   /* every node, for freeing */
    node_list named; /* named types in definition order */
    const char *origin;
    char *err;
    size_t errlen;
    int depth;
} parser;

static int is_name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

/* A simple Avro name: [A-Za-z_][A-Za-z0-9_]*. */
static int valid_simple_name(const char *s, size_t len)
{
    if (len == 0 || !is_name_start(s[0])) return 0;
    for (size_t i = 1; i < len; i++)
        if (!is_name_char(s[i])) return 0;
    return 1;
}

/* A dotted full name (or a namespace when allow_empty). */
static int valid_dotted_name(const char *s, int allow_empty)
{
    size_t len = strlen(s);
    if (len == 0) return allow_empty;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (!valid_simple_name(s + start, i - start)) return 0;
            start = i + 1;
        }
    }
    return 1;
}

static int is_primitive_name(const char *s, kind *k)
{
    for (int i = K_NULL; i <= K_STRING; i++) {
        if (strcmp(s, kind_names[i]) == 0) {
            *k = (kind)i;
            return 1;
        }
    }
    return 0;
}

static char *qualify(const char *name, const char *ns)
{
    char *out;
    if (strchr(name, '.') || !ns || !*ns) return strdup(name);
    size_t len = strlen(ns) + 1 + strlen(name) + 1;
    out = malloc(len);
    if (out) snprintf(out, len, "%s.%s", ns, name);
    return out;
}

static node *new_node(parser *p, kind k)
{
    node *n = calloc(1, sizeof *n);
    if (!n || node_list_push(&p->all, n) != CL_OK) {
        free(n);
        cl_seterr(p->err, p->errlen, CL_ENOMEM, "%s: out of memory", p->origin);
        return NULL;
    }
    n->k = k;
    n->enum_default = -1;
    return n;
}

static node *find_named(const node_list *named, const char *fullname)
{
    for (size_t i = 0; i < named->n; i++)
        if (strcmp(named->v[i]->fullname, fullname) == 0) return named->v[i];
    return NULL;
}

static node *lookup_reference(parser *p, const char *name, const char *ns)
{
    node *n = NULL;
    if (!strchr(name, '.') && ns && *ns) {
        char *full = qualify(name, ns);
        if (!full) return NULL;
        n = find_named(&p->named, full);
        free(full);
    }
    if (!n) n = find_named(&p->named, name);
    return n;
}

static node *parse_node(parser *p, const json_t *j, const char *ns, const char *path);

static int parse_aliases(parser *p, const json_t *arr, const char *ns, int qualify_names,
                         char ***out, size_t *nout, const char *path)
{
    *out = NULL;
    *nout = 0;
    if (!arr) return CL_OK;
    if (!json_is_array(arr))
        return cl_seterr(p->err, p->errlen, CL_EINVAL, "%s: %s: aliases must be an array",
                         p->origin, path);
    size_t n = json_array_size(arr);
    if (n == 0) return CL_OK;
    char **v = calloc(n, sizeof *v);
    if (!v) return cl_seterr(p->err, p->errlen, CL_ENOMEM, "%s: out of memory", p->origin);
    for (size_t i = 0; i < n; i++) {
        const json_t *a = json_array_get(arr, i);
        const char *s = json_string_value(a);
        if (!s || !valid_dotted_name(s, 0)) {
            free_strings(v, i);
            return cl_seterr(p->err, p->errlen, CL_EINVAL, "%s: %s: alias %zu is not a valid name",
                             p->origin, path, i);
        }
        v[i] = qualify_names ? qualify(s, ns) : strdup(s);
        if (!v[i]) {
            free_strings(v, i);
            return cl_seterr(p->err, p->errlen, CL_ENOMEM, "%s: out of memory", p->origin);
        }
    }
    *out = v;
    *nout = n;
    return CL_OK;
}

/* Defines a named type: computes its full name and namespace, registers it before its
 * body is parsed (so a record may refer to itself). *inner_ns receives the namespace
 * that nested definitions inherit (pointer into n->fullname's copy below). */
static node *define_named(parser *p, kind k, const json_t *obj, const char *ns, const char *path,
                          char **inner_ns)
{
    const char *name = json_string_value(json_object_get(obj, "name"));
    if (!name || !valid_dotted_name(name, 0)) {
        cl_seterr(p->err, p->errlen, CL_EINVAL, "%s: %s: %s needs a valid \"name\"", p->origin,
                  path, kind_names[k]);
        return NULL;
    }
    const json_t *jns = json_object_get(obj, "namespace");
    const char *own_ns = ns;
    if (jns && !json_is_null(jns)) {
        own_ns = json_string_value(jns);
        if (!own_ns || !valid_dotted_name(own_ns, 1)) {
            cl_seterr(p->err, p->errlen, CL_EINVAL, "%s: %s: invalid namespace", p->origin, path);
            return NULL;
        }
    }
    node *n = new_node(p, k);
    if (!n) return NULL;
    n->fullname = qualify(name, own_ns);
    if (!n->fullname) {
        cl_seterr(p->err, p->errlen, CL_ENOMEM, "%s: out of memory", p->origin);
        return NULL;
    }
    const char *dot = strrchr(n->fullname, '.');
    n->name = dot ? dot + 1 : n->fullname;
    if (is_primitive_name(n->name, &(kind){K_NULL})) {
        cl_seterr(p->err, p->errlen, CL_EINVAL, "%s: %s: '%s' is a primitive type name", p->origin,
                  path, n->name);
        return NULL;
    }
    if (find_named(&p->named, n->fullname)) {
        cl_seterr(p->err, p->errlen, CL_EINVAL, "%s: %s: type '%s' is defined twice", p->origin,
                  path, n->fullname);
        return NULL;
    }
    if (node_list_push(&p->named, n) != CL_OK) {
        cl_seterr(p->err, p->errlen, CL_ENOMEM, "%s: out of memory", p->origin);
        return NULL;
    }
    *inner_ns = dot ? strndup(n->fullname, (size_t)(dot - n->fullname)) : strdup("");
    if (!*inner_ns) {
        cl_seterr(p->err, p->errlen, CL_ENOMEM, "%s: out of memory", p->origin);
        return NULL;
    }
    if (parse_aliases(p, json_object_get(obj, "aliases"), *inner_ns, 1, &n->aliases, &n->naliases,
                      path) != CL_OK)
        return NULL;
    return n;
}

static int parse_record_body(parser *p, node *n, const json_t *obj, const char *ns,
                             const char *path)
{
    const json_t *fields = json_object_get(obj, "fields");
    if (!json_is_array(fields))
        return cl_seterr(p->err, p->errlen, CL_EINVAL, "%s: %s: record %s needs a \"fields\" array",
                         p->origin, path, n->fullname);
    size_t nf = json_array_size(fields);
    n->fields = calloc(nf ? nf : 1, sizeof *n->fields);
    if (!n->fields) return cl_seterr(p->err, p->errlen, CL_ENOMEM, "%s: out of memory", p->origin);
    for (size_t i = 0; i < nf; i++) {
        const json_t *jf = json_array_get(fields, i);
        char fpath[256];
        const char *fname = json_string_value(json_object_get(jf, "name"));
        if (!json_is_object(jf) || !fname || !valid_simple_name(fname, strlen(fname)))
            return cl_seterr(p->err, p->errlen, CL_EINVAL,
                             "%s: %s: field %zu of %s needs a valid \"name\"", p->origin, path, i,
                             n->fullname);
        for (size_t k = 0; k < n->nfields; k++)
            if (strcmp(n->fields[k].name, fname) == 0)
                return cl_seterr(p->err, p->errlen, CL_EINVAL,
                                 "%s: %s: field '%s' appears twice in %s", p->origin, path, fname,
                                 n->fullname);
        snprintf(fpath, sizeof fpath, "%s.%s", n->fullname, fname);
        field *f = &n->fields[n->nfields];
        f->name = strdup(fname);
        if (!f->name)
            return cl_seterr(p->err, p->errlen, CL_ENOMEM, "%s: out of memory", p->origin);
        n->nfields++;
        const json_t *jt = json_object_get(jf, "type");
        if (!jt)
            return cl_seterr(p->err, p->errlen, CL_EINVAL, "%s: field %s has no \"type\"",
                             p->origin, fpath);
        f->type = parse_node(p, jt, ns, fpath);
        if (!f->type) return CL_EINVAL;
        f->def = json_object_get(jf, "default");
        if (parse_aliases(p, json_object_get(jf, "aliases"), NULL, 0, &f->aliases, &f->naliases,
                          fpath) != CL_OK)
            return CL_EINVAL;
    }
    return CL_OK;
}

static int parse_enum_body(parser *p, node *n, const json_t *obj, const char *path)
{
    const json_t *syms = json_object_get(obj, "symbols");
    if (!json_is_array(syms))
        return cl_seterr(p->err, p->errlen, CL_EINVAL, "%s: %s: enum %s needs a \"symbols\" array",
                         p->origin, path, n->fullname);
    size_t ns = json_array_size(syms);
    n->symbols = calloc(ns ? ns : 1, sizeof *n->symbols);
    if (!n->symbols) return cl_seterr(p->err, p->errlen, CL_ENOMEM, "%s: out of memory", p->origin);
    for (size_t i = 0; i < ns; i++) {
        const char *s = json_string_value(json_array_get(syms, i));
        if (!s || !valid_simple_name(s, strlen(s)))
            return cl_seterr(p->err, p->errlen, CL_EINVAL,
                             "%s: %s: symbol %zu of enum %s is not a valid name", p->origin, path,
                             i, n->fullname);
        for (size_t k = 0; k < n->nsymbols; k++)
            if (strcmp(n->symbols[k], s) == 0)
                return cl_seterr(p->err, p->errlen, CL_EINVAL,
                                 "%s: %s: symbol '%s' appears twice in enum %s", p->origin, path, s,
                                 n->fullname);
        n->symbols[i] = strdup(s);
        if (!n->symbols[i])
            return cl_seterr(p->err, p->errlen, CL_ENOMEM, "%s: out of memory", p->origin);
        n->nsymbols++;
    }
    if (n->nsymbols == 0)
        return cl_seterr(p->err, p->errlen, CL_EINVAL, "%s: %s: enum %s has no symbols", p->origin,
                         path, n->fullname);
    const json_t *def = json_object_get(obj, "default");
    if (def) {
        const char *d = json_string_value(def);
        for (size_t k = 0; d && k < n->nsymbols; k++)
            if (strcmp(n->symbols[k], d) == 0) n->enum_default = (int)k;
        if (n->enum_default < 0)
            return cl_seterr(p->err, p->errlen, CL_EINVAL,
                             "%s: %s: default of enum %s is not one of its symbols", p->origin,
                             path, n->fullname);
    }
    return CL_OK;
}

static node *parse_object(parser *p, const json_t *j, const char *ns, const char *path)
{
    const json_t *jt = json_object_get(j, "type");
    if (!jt) {
        cl_seterr(p->err, p->errlen, CL_EINVAL, "%s: %s: schema object has no \"type\"", p->origin,
                  path);
        return NULL;
    }
    if (!json_is_string(jt))
        return parse_node(p, jt, ns, path); /* {"type": {...}} or {"type": [...]} */
    const char *t = json_string_value(jt);
    kind k;
    if (is_primitive_name(t, &k))
        return new_node(p, k); /* logicalType and other attributes do not change the kind */
    if (strcmp(t, "array") == 0 || strcmp(t, "map") == 0) {
        int is_array = t[0] == 'a';
        const json_t *ji = json_object_get(j, is_array ? "items" : "values");
        if (!ji) {
            cl_seterr(p->err, p->errlen, CL_EINVAL, "%s: %s: %s needs \"%s\"", p->origin, path, t,
                      is_array ? "items" : "values");
            return NULL;
        }
        node *n = new_node(p, is_array ? K_ARRAY : K_MAP);
        if (!n) return NULL;
        n->items = parse_node(p, ji, ns, path);
        return n->items ? n : NULL;
    }
    kind nk;
    if (strcmp(t, "record") == 0 || strcmp(t, "error") == 0)
        nk = K_RECORD;
    else if (strcmp(t, "enum") == 0)
        nk = K_ENUM;
    else if (strcmp(t, "fixed") == 0)
        nk = K_FIXED;
    else {
        node *ref = lookup_reference(p, t, ns);
        if (!ref)
            cl_seterr(p->err, p->errlen, CL_EINVAL, "%s: %s: unknown type '%s'", p->origin, path,
                      t);
        return ref;
    }
    char *inner_ns = NULL;
    node *n = define_named(p, nk, j, ns, path, &inner_ns);
    int rc = n ? CL_OK : CL_EINVAL;
    if (rc == CL_OK && nk == K_RECORD) {
        n->is_error = t[0] == 'e';
        rc = parse_record_body(p, n, j, inner_ns, path);
    } else if (rc == CL_OK && nk == K_ENUM) {
        rc = parse_enum_body(p, n, j, path);
    } else if (rc == CL_OK) {
        const json_t *js = json_object_get(j, "size");
        if (!json_is_integer(js) || json_integer_value(js) < 0 ||
            json_integer_value(js) > INT32_MAX)
            rc = cl_seterr(p->err, p->errlen, CL_EINVAL, "%s: %s: fixed %s needs a valid \"size\"",
                           p->origin, path, n->fullname);
        else
            n->size = (int64_t)json_integer_value(js);
    }
    free(inner_ns);
    return rc == CL_OK ? n : NULL;
}

static node *parse_node(parser *p, const json_t *j, const char *ns, const char *path)
{
    if (++p->depth > MAX_JSON_DEPTH) {
        cl_seterr(p->err, p->errlen, CL_EINVAL, "%s: %s: schema nested deeper than %d levels",
                  p->origin, path, MAX_JSON_DEPTH);
        return NULL;
    }
    node *n = NULL;
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        kind k;
        if (is_primitive_name(s, &k))
            n = new_node(p, k);
        else if (!(n = lookup_reference(p, s, ns)))
            cl_seterr(p->err, p->errlen, CL_EINVAL, "%s: %s: unknown type '%s'", p->origin, path,
                      s);
    } else if (json_is_array(j)) {
        n = new_node(p, K_UNION);
        size_t nb = json_array_size(j);
        if (n && !(n->branches = calloc(nb ? nb : 1, sizeof *n->branches))) {
            cl_seterr(p->err, p->errlen, CL_ENOMEM, "%s: out of memory", p->origin);
            n = NULL;
        }
        for (size_t i = 0; n && i < nb; i++) {
            node *b = parse_node(p, json_array_get(j, i), ns, path);
            if (!b) {
                n = NULL;
                break;
            }
            if (b->k == K_UNION) {
                cl_seterr(p->err, p->errlen, CL_EINVAL, "%s: %s: a union may not contain a union",
                          p->origin, path);
                n = NULL;
                break;
            }
            for (size_t k = 0; k < n->nbranches; k++) {
                const node *o = n->branches[k];
                int same = o->k == b->k && (!o->fullname || strcmp(o->fullname, b->fullname) == 0);
                if (same) {
                    cl_seterr(p->err, p->errlen, CL_EINVAL,
                              "%s: %s: union has two branches of type %s", p->origin, path,
                              b->fullname ? b->fullname : kind_names[b->k]);
                    n = NULL;
                    break;
                }
            }
            if (n) n->branches[n->nbranches++] = b;
        }
        if (n && n->nbranches == 0) {
            cl_seterr(p->err, p->errlen, CL_EINVAL, "%s: %s: empty union", p->origin, path);
            n = NULL;
        }
    } else if (json_is_object(j)) {
        n = parse_object(p, j, ns, path);
    } else {
        cl_seterr(p->err, p->errlen, CL_EINVAL,
                  "%s: %s: a schema must be a string, object or array", p->origin, path);
    }
    p->depth--;
    return n;
}

/* ===================================================================================
 * Parsing Canonical Form
 * =================================================================================== */

/* Names, symbols and primitive names are restricted to [A-Za-z0-9_.], so they need no
 * escaping; the writer still escapes defensively in case that invariant is broken. */
static int emit_str(cl_buf *b, const char *s)
{
    int rc = cl_buf_append(b, "\"", 1);
    for (const char *c = s; rc == CL_OK && *c; c++) {
        if (*c == '"' || *c == '\\')
            rc = cl_buf_printf(b, "\\%c", *c);
        else if ((unsigned char)*c < 0x20)
            rc = cl_buf_printf(b, "\\u%04x", (unsigned)(unsigned char)*c);
        else
            rc = cl_buf_append(b, c, 1);
    }
    return rc == CL_OK ? cl_buf_append(b, "\"", 1) : rc;
}

static int emit_canonical(cl_buf *b, node *n)
{
    int rc = CL_OK;
    size_t i;
    switch (n->k) {
    case K_NULL:
    case K_BOOLEAN:
    case K_INT:
    case K_LONG:
    case K_FLOAT:
    case K_DOUBLE:
    case K_BYTES:
    case K_STRING:
        return emit_str(b, kind_names[n->k]);
    case K_RECORD:
    case K_ENUM:
    case K_FIXED:
        if (n->emitted) return emit_str(b, n->fullname);
        n->emitted = 1;
        rc = cl_buf_append(b, "{\"name\":", 8);
        if (rc == CL_OK) rc = emit_str(b, n->fullname);
        if (rc == CL_OK) rc = cl_buf_append(b, ",\"type\":", 8);
        if (n->k == K_RECORD) {
            if (rc == CL_OK) rc = emit_str(b, n->is_error ? "error" : "record");
            if (rc == CL_OK) rc = cl_buf_append(b, ",\"fields\":[", 11);
            for (i = 0; rc == CL_OK && i < n->nfields; i++) {
                rc = cl_buf_append(b, i ? ",{\"name\":" : "{\"name\":", i ? 9 : 8);
                if (rc == CL_OK) rc = emit_str(b, n->fields[i].name);
                if (rc == CL_OK) rc = cl_buf_append(b, ",\"type\":", 8);
                if (rc == CL_OK) rc = emit_canonical(b, n->fields[i].type);
                if (rc == CL_OK) rc = cl_buf_append(b, "}", 1);
            }
            if (rc == CL_OK) rc = cl_buf_append(b, "]}", 2);
        } else if (n->k == K_ENUM) {
            if (rc == CL_OK) rc = cl_buf_append(b, "\"enum\",\"symbols\":[", 18);
            for (i = 0; rc == CL_OK && i < n->nsymbols; i++) {
                if (i) rc = cl_buf_append(b, ",", 1);
                if (rc == CL_OK) rc = emit_str(b, n->symbols[i]);
            }
            if (rc == CL_OK) rc = cl_buf_append(b, "]}", 2);
        } else {
            if (rc == CL_OK) rc = cl_buf_printf(b, "\"fixed\",\"size\":%" PRId64 "}", n->size);
        }
        return rc;
    case K_ARRAY:
    case K_MAP:
        rc = cl_buf_append(
            b, n->k == K_ARRAY ? "{\"type\":\"array\",\"items\":" : "{\"type\":\"map\",\"values\":",
            n->k == K_ARRAY ? 24 : 23);
        if (rc == CL_OK) rc = emit_canonical(b, n->items);
        return rc == CL_OK ? cl_buf_append(b, "}", 1) : rc;
    case K_UNION:
        rc = cl_buf_append(b, "[", 1);
        for (i = 0; rc == CL_OK && i < n->nbranches; i++) {
            if (i) rc = cl_buf_append(b, ",", 1);
            if (rc == CL_OK) rc = emit_canonical(b, n->branches[i]);
        }
        return rc == CL_OK ? cl_buf_append(b, "]", 1) : rc;
    }
    return CL_EINVAL;
}

/* ===================================================================================
 * CRC-64-AVRO
 * =================================================================================== */

#define CRC64_AVRO_EMPTY 0xc15d213aa4d7a795ULL
static uint64_t crc64_table[256];
static pthread_once_t crc64_once = PTHREAD_ONCE_INIT;

static void crc64_init(void)
{
    for (int i = 0; i < 256; i++) {
        uint64_t fp = (uint64_t)i;
        for (int j = 0; j < 8; j++)
            fp = (fp >> 1) ^ (CRC64_AVRO_EMPTY & (0 - (fp & 1)));
        crc64_table[i] = fp;
    }
}

uint64_t cl_avro_fingerprint64(const void *data, size_t len)
{
    pthread_once(&crc64_once, crc64_init);
    const uint8_t *p = data;
    uint64_t fp = CRC64_AVRO_EMPTY;
    for (size_t i = 0; i < len; i++)
        fp = (fp >> 8) ^ crc64_table[(fp ^ p[i]) & 0xff];
    return fp;
}

/* ===================================================================================
 * cl_avro_schema
 * =================================================================================== */

struct cl_avro_schema {
    char *text;
    size_t text_len;
    char *canonical;
    uint64_t fingerprint;
    char *origin;
    json_t *doc;     /* owns the default values the nodes point to */
    node_list nodes; /* every node */
    node *root;
    avro_schema_t avro;
};

void cl_avro_schema_free(cl_avro_schema *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->nodes.n; i++)
        node_free(s->nodes.v[i]);
    free(s->nodes.v);
    if (s->avro) avro_schema_decref(s->avro);
    json_decref(s->doc);
    free(s->text);
    free(s->canonical);
    free(s->origin);
    free(s);
}

/* Parses text into a node tree and (optionally) its canonical form. */
static int parse_tree(const char *text, size_t len, const char *origin, json_t **doc_out,
                      node_list *nodes, node **root, cl_buf *canonical, char *err, size_t errlen)
{
    json_error_t jerr;
    if (len > MAX_SCHEMA_BYTES)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "%s: schema is %zu bytes, more than the %u allowed", origin, len,
                         MAX_SCHEMA_BYTES);
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc)
        return cl_seterr(err, errlen, CL_EINVAL, "%s: line %d column %d: invalid JSON: %s", origin,
                         jerr.line, jerr.column, jerr.text);
    parser p = {.origin = origin, .err = err, .errlen = errlen};
    node *r = parse_node(&p, doc, "", "schema");
    free(p.named.v);
    int rc = r ? CL_OK : CL_EINVAL;
    if (rc == CL_OK && canonical) {
        for (size_t i = 0; i < p.all.n; i++)
            p.all.v[i]->emitted = 0;
        rc = emit_canonical(canonical, r);
        if (rc != CL_OK)
            cl_seterr(err, errlen, rc, "%s: canonical form does not fit in memory", origin);
    }
    if (rc != CL_OK) {
        for (size_t i = 0; i < p.all.n; i++)
            node_free(p.all.v[i]);
        free(p.all.v);
        json_decref(doc);
        return rc;
    }
    *doc_out = doc;
    *nodes = p.all;
    *root = r;
    return CL_OK;
}

int cl_avro_canonical_form(const char *text, size_t len, cl_buf *out, char *err, size_t errlen)
{
    json_t *doc;
    node_list nodes;
    node *root;
    int rc = parse_tree(text, len, "schema", &doc, &nodes, &root, out, err, errlen);
    if (rc != CL_OK) return rc;
    for (size_t i = 0; i < nodes.n; i++)
        node_free(nodes.v[i]);
    free(nodes.v);
    json_decref(doc);
    return CL_OK;
}

int cl_avro_schema_parse(const char *text, size_t len, const char *origin, cl_avro_schema **out,
                         char *err, size_t errlen)
{
    *out = NULL;
    cl_avro_schema *s = calloc(1, sizeof *s);
    if (!s) return cl_seterr(err, errlen, CL_ENOMEM, "%s: out of memory", origin);
    cl_buf canon;
    cl_buf_init(&canon, MAX_SCHEMA_BYTES);
    int rc = parse_tree(text, len, origin, &s->doc, &s->nodes, &s->root, &canon, err, errlen);
    if (rc != CL_OK) {
        cl_buf_free(&canon);
        free(s);
        return rc;
    }
    s->canonical = canon.data; /* ownership moves */
    s->fingerprint = cl_avro_fingerprint64(canon.data, canon.len);
    s->text = strndup(text, len);
    s->text_len = len;
    s->origin = strdup(origin);
    if (!s->text || !s->origin || !s->canonical) {
        cl_avro_schema_free(s);
        return cl_seterr(err, errlen, CL_ENOMEM, "%s: out of memory", origin);
    }
    if (s->root->k != K_RECORD) {
        rc = cl_seterr(err, errlen, CL_EINVAL, "%s: the top-level type must be a record, not %s",
                       origin, kind_names[s->root->k]);
        cl_avro_schema_free(s);
        return rc;
    }
    if (avro_schema_from_json_length(s->text, len, &s->avro) != 0) {
        s->avro = NULL;
        rc = cl_seterr(err, errlen, CL_EINVAL, "%s: avro-c rejects the schema: %s", origin,
                       avro_strerror());
        cl_avro_schema_free(s);
        return rc;
    }
    *out = s;
    return CL_OK;
}

const char *cl_avro_schema_name(const cl_avro_schema *s)
{
    return s->root->fullname;
}
const char *cl_avro_schema_text(const cl_avro_schema *s)
{
    return s->text;
}
const char *cl_avro_schema_canonical(const cl_avro_schema *s)
{
    return s->canonical;
}
uint64_t cl_avro_schema_fingerprint(const cl_avro_schema *s)
{
    return s->fingerprint;
}
const char *cl_avro_schema_origin(const cl_avro_schema *s)
{
    return s->origin;
}
avro_schema_t cl_avro_schema_avro(const cl_avro_schema *s)
{
    return s->avro;
}

/* ===================================================================================
 * Schema sets
 * =================================================================================== */

typedef struct {
    cl_avro_schema *schema;
    int current;
} set_entry;

struct cl_avro_schemas {
    set_entry *v;
    size_t n, cap;
};

cl_avro_schemas *cl_avro_schemas_new(void)
{
    return calloc(1, sizeof(cl_avro_schemas));
}

void cl_avro_schemas_free(cl_avro_schemas *set)
{
    if (!set) return;
    for (size_t i = 0; i < set->n; i++)
        cl_avro_schema_free(set->v[i].schema);
    free(set->v);
    free(set);
}

int cl_avro_schemas_add_text(cl_avro_schemas *set, const char *text, size_t len, const char *origin,
                             int current, char *err, size_t errlen)
{
    cl_avro_schema *s;
    int rc = cl_avro_schema_parse(text, len, origin, &s, err, errlen);
    if (rc != CL_OK) return rc;
    for (size_t i = 0; i < set->n; i++) {
        const cl_avro_schema *o = set->v[i].schema;
        if (current && set->v[i].current && strcmp(o->root->fullname, s->root->fullname) == 0) {
            rc = cl_seterr(err, errlen, CL_ECONFLICT,
                           "%s: record %s is already defined by %s; keep older versions in "
                           "the history/ subdirectory",
                           origin, s->root->fullname, o->origin);
            cl_avro_schema_free(s);
            return rc;
        }
    }
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 16;
        set_entry *v = realloc(set->v, cap * sizeof *v);
        if (!v) {
            cl_avro_schema_free(s);
            return cl_seterr(err, errlen, CL_ENOMEM, "%s: out of memory", origin);
        }
        set->v = v;
        set->cap = cap;
    }
    set->v[set->n].schema = s;
    set->v[set->n].current = current ? 1 : 0;
    set->n++;
    return CL_OK;
}

static int read_file(const char *path, char **out, size_t *len_out, size_t limit, char *err,
                     size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) return cl_seterr(err, errlen, CL_EIO, "%s: cannot open: %s", path, strerror(errno));
    cl_buf b;
    cl_buf_init(&b, limit);
    char chunk[8192];
    size_t n;
    int rc = CL_OK;
    while (rc == CL_OK && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = cl_buf_append(&b, chunk, n);
    if (rc == CL_OK && ferror(f))
        rc = cl_seterr(err, errlen, CL_EIO, "%s: read error", path);
    else if (rc != CL_OK)
        rc = cl_seterr(err, errlen, CL_EINVAL, "%s: larger than %zu bytes", path, limit);
    fclose(f);
    if (rc != CL_OK) {
        cl_buf_free(&b);
        return rc;
    }
    *out = b.data ? b.data : strdup("");
    *len_out = b.len;
    return *out ? CL_OK : cl_seterr(err, errlen, CL_ENOMEM, "%s: out of memory", path);
}

int cl_avro_schemas_add_file(cl_avro_schemas *set, const char *path, int current, char *err,
                             size_t errlen)
{
    char *text;
    size_t len;
    int rc = read_file(path, &text, &len, MAX_SCHEMA_BYTES, err, errlen);
    if (rc != CL_OK) return rc;
    rc = cl_avro_schemas_add_text(set, text, len, path, current, err, errlen);
    free(text);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds every *.avsc of dir, in name order so that loading is deterministic. */
static int add_dir(cl_avro_schemas *set, const char *dir, int current, int must_exist, char *err,
                   size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (!must_exist && errno == ENOENT) return CL_OK;
        return cl_seterr(err, errlen, CL_EIO, "schema directory %s (avro.schema.dir): %s", dir,
                         strerror(errno));
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = CL_OK;
    struct dirent *e;
    while (rc == CL_OK && (e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l <= 5 || strcmp(e->d_name + l - 5, ".avsc") != 0 || e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **v = realloc(names, cap * sizeof *v);
            if (!v) {
                rc = cl_seterr(err, errlen, CL_ENOMEM, "%s: out of memory", dir);
                break;
            }
            names = v;
        }
        if (!(names[n] = strdup(e->d_name)))
            rc = cl_seterr(err, errlen, CL_ENOMEM, "%s: out of memory", dir);
        else
            n++;
    }
    closedir(d);
    if (names) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; rc == CL_OK && i < n; i++) {
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= (int)sizeof path)
            rc = cl_seterr(err, errlen, CL_EINVAL, "%s/%s: path too long", dir, names[i]);
        else
            rc = cl_avro_schemas_add_file(set, path, current, err, errlen);
    }
    free_strings(names, n);
    return rc;
}

int cl_avro_schemas_load(const char *dir, cl_avro_schemas **out, char *err, size_t errlen)
{
    *out = NULL;
    cl_avro_schemas *set = cl_avro_schemas_new();
    if (!set) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    char hist[4096];
    int rc = add_dir(set, dir, 1, 1, err, errlen);
    if (rc == CL_OK) {
        if (snprintf(hist, sizeof hist, "%s/history", dir) >= (int)sizeof hist)
            rc = cl_seterr(err, errlen, CL_EINVAL, "%s: path too long", dir);
        else
            rc = add_dir(set, hist, 0, 0, err, errlen);
    }
    if (rc != CL_OK) {
        cl_avro_schemas_free(set);
        return rc;
    }
    *out = set;
    return CL_OK;
}

const cl_avro_schema *cl_avro_schemas_find(const cl_avro_schemas *set, const char *name)
{
    const cl_avro_schema *by_short = NULL;
    int nshort = 0;
    for (size_t i = 0; i < set->n; i++) {
        if (!set->v[i].current) continue;
        const node *r = set->v[i].schema->root;
        if (strcmp(r->fullname, name) == 0) return set->v[i].schema;
        if (strcmp(r->name, name) == 0) {
            by_short = set->v[i].schema;
            nshort++;
        }
    }
    return nshort == 1 ? by_short : NULL;
}

const cl_avro_schema *cl_avro_schemas_by_fingerprint(const cl_avro_schemas *set, uint64_t fp)
{
    for (size_t i = 0; i < set->n; i++)
        if (set->v[i].schema->fingerprint == fp) return set->v[i].schema;
    return NULL;
}

size_t cl_avro_schemas_count(const cl_avro_schemas *set)
{
    return set->n;
}

const cl_avro_schema *cl_avro_schemas_at(const cl_avro_schemas *set, size_t i, int *current)
{
    if (i >= set->n) return NULL;
    if (current) *current = set->v[i].current;
    return set->v[i].schema;
}

/* ===================================================================================
 * Framing
 * =================================================================================== */

int cl_avro_frame_parse(const void *data, size_t len, cl_avro_frame *out, char *err, size_t errlen)
{
    const uint8_t *p = data;
    memset(out, 0, sizeof *out);
    if (!p || len == 0) return cl_seterr(err, errlen, CL_EINVAL, "empty message: no Avro framing");
    if (p[0] == 0xC3) {
        if (len < CL_AVRO_SINGLE_OBJECT_HEADER_LEN || p[1] != 0x01)
            return cl_seterr(err, errlen, CL_EINVAL,
                             len < 2 || p[1] == 0x01
                                 ? "truncated single-object header: %zu bytes, need 10"
                                 : "bad single-object marker: second byte is not 0x01 (%zu bytes)",
                             len);
        uint64_t fp = 0;
        for (int i = 0; i < 8; i++)
            fp |= (uint64_t)p[2 + i] << (8 * i);
        out->framing = CL_AVRO_FRAMING_SINGLE_OBJECT;
        out->fingerprint = fp;
        out->datum = p + CL_AVRO_SINGLE_OBJECT_HEADER_LEN;
        out->datum_len = len - CL_AVRO_SINGLE_OBJECT_HEADER_LEN;
        return CL_OK;
    }
    if (p[0] == 0x00) {
        if (len < CL_AVRO_CONFLUENT_HEADER_LEN)
            return cl_seterr(err, errlen, CL_EINVAL,
                             "truncated Confluent header: %zu bytes, need 5", len);
        uint32_t id = ((uint32_t)p[1] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 8) |
                      (uint32_t)p[4];
        if (id > INT32_MAX)
            return cl_seterr(err, errlen, CL_EINVAL,
                             "Confluent schema id %" PRIu32 " is out of range", id);
        out->framing = CL_AVRO_FRAMING_CONFLUENT;
        out->schema_id = (int32_t)id;
        out->datum = p + CL_AVRO_CONFLUENT_HEADER_LEN;
        out->datum_len = len - CL_AVRO_CONFLUENT_HEADER_LEN;
        return CL_OK;
    }
    return cl_seterr(err, errlen, CL_EINVAL,
                     "bad magic byte 0x%02x: expected 0xC3 0x01 (Avro single-object) or 0x00 "
                     "(Confluent wire format)",
                     p[0]);
}

/* ===================================================================================
 * Bounds check of a binary datum against the writer's node tree
 * =================================================================================== */

typedef struct {
    const uint8_t *start, *p, *end;
    size_t items_left;
    int depth;
    const char *path[MAX_VALUE_DEPTH + 2]; /* field names, for the error message */
    int npath;
    char *err;
    size_t errlen;
} checker;

static int check_fail(checker *c, const char *what)
{
    char path[512];
    size_t off = 0;
    path[0] = '\0';
    for (int i = 0; i < c->npath && off < sizeof path; i++) {
        int w = snprintf(path + off, sizeof path - off, "%s%s", i ? "." : "", c->path[i]);
        if (w < 0) break;
        off += (size_t)w;
    }
    return cl_seterr(c->err, c->errlen, CL_EINVAL, "%s: %s at byte offset %td of the datum", what,
                     path[0] ? path : "(datum)", c->p - c->start);
}

static int read_varlong(checker *c, int64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (c->p >= c->end) return check_fail(c, "truncated datum (varint)");
        uint8_t b = *c->p++;
        if (shift == 63 && (b & 0x7e)) return check_fail(c, "varint overflows 64 bits");
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)((v >> 1) ^ (0 - (v & 1)));
            return CL_OK;
        }
    }
    return check_fail(c, "varint longer than 10 bytes");
}

static int need(checker *c, int64_t n, const char *what)
{
    if (n < 0) return check_fail(c, what);
    if ((uint64_t)n > (uint64_t)(c->end - c->p)) {
        char msg[96];
        snprintf(msg, sizeof msg, "truncated datum (%s of %" PRId64 " bytes, %td left)", what, n,
                 c->end - c->p);
        return check_fail(c, msg);
    }
    c->p += n;
    return CL_OK;
}

static int check_node(checker *c, const node *n)
{
    int64_t v;
    int rc;
    if (c->depth >= MAX_VALUE_DEPTH) return check_fail(c, "datum nested too deeply");
    switch (n->k) {
    case K_NULL:
        return CL_OK;
    case K_BOOLEAN:
        if (c->p >= c->end) return check_fail(c, "truncated datum (boolean)");
        if (*c->p > 1) return check_fail(c, "boolean byte is neither 0 nor 1");
        c->p++;
        return CL_OK;
    case K_INT:
        if ((rc = read_varlong(c, &v)) != CL_OK) return rc;
        return v < INT32_MIN || v > INT32_MAX ? check_fail(c, "int out of 32-bit range") : CL_OK;
    case K_LONG:
        return read_varlong(c, &v);
    case K_FLOAT:
        return need(c, 4, "float");
    case K_DOUBLE:
        return need(c, 8, "double");
    case K_BYTES:
    case K_STRING:
        if ((rc = read_varlong(c, &v)) != CL_OK) return rc;
        return need(c, v, n->k == K_BYTES ? "bytes" : "string");
    case K_FIXED:
        return need(c, n->size, "fixed");
    case K_ENUM:
        if ((rc = read_varlong(c, &v)) != CL_OK) return rc;
        return v < 0 || (uint64_t)v >= n->nsymbols ? check_fail(c, "enum index out of range")
                                                   : CL_OK;
    case K_UNION:
        if ((rc = read_varlong(c, &v)) != CL_OK) return rc;
        if (v < 0 || (uint64_t)v >= n->nbranches)
            return check_fail(c, "union branch index out of range");
        c->depth++;
        rc = check_node(c, n->branches[v]);
        c->depth--;
        return rc;
    case K_RECORD:
        c->depth++;
        for (size_t i = 0; i < n->nfields; i++) {
            c->path[c->npath++] = n->fields[i].name;
            rc = check_node(c, n->fields[i].type);
            c->npath--;
            if (rc != CL_OK) return rc;
        }
        c->depth--;
        return CL_OK;
    case K_ARRAY:
    case K_MAP:
        c->depth++;
        for (;;) {
            int64_t count;
            if ((rc = read_varlong(c, &count)) != CL_OK) return rc;
            if (count == 0) break;
            if (count < 0) {
                int64_t bytes;
                if (count == INT64_MIN) return check_fail(c, "block count out of range");
                count = -count;
                if ((rc = read_varlong(c, &bytes)) != CL_OK) return rc;
                if (bytes < 0 || (uint64_t)bytes > (uint64_t)(c->end - c->p))
                    return check_fail(c, "block byte size exceeds the datum");
            }
            if ((uint64_t)count > c->items_left)
                return check_fail(c, "too many array/map items in one datum");
            c->items_left -= (size_t)count;
            for (int64_t i = 0; i < count; i++) {
                if (n->k == K_MAP) {
                    if ((rc = read_varlong(c, &v)) != CL_OK || (rc = need(c, v, "map key")) != 0)
                        return rc;
                }
                if ((rc = check_node(c, n->items)) != CL_OK) return rc;
            }
        }
        c->depth--;
        return CL_OK;
    }
    return check_fail(c, "internal: unknown schema node");
}

/* Returns CL_OK when data is exactly one well-formed datum of the schema. */
static int check_datum(const node *root, const uint8_t *data, size_t len, char *err, size_t errlen)
{
    checker c = {.start = data,
                 .p = data,
                 .end = data + len,
                 .items_left = MAX_ITEMS_PER_DATUM,
                 .err = err,
                 .errlen = errlen};
    int rc = check_node(&c, root);
    if (rc != CL_OK) return rc;
    if (c.p != c.end)
        return cl_seterr(err, errlen, CL_EINVAL,
                         "trailing bytes: the datum ends at byte %td but the message has %zu",
                         c.p - c.start, len);
    return CL_OK;
}

/* ===================================================================================
 * JSON <-> value
 * =================================================================================== */

typedef struct {
    char *err;
    size_t errlen;
    char path[256];
    size_t plen;
    cl_buf *scratch;
} jctx;

static size_t path_push(jctx *c, const char *seg, int index)
{
    size_t saved = c->plen;
    if (c->plen < sizeof c->path) {
        int w = seg ? snprintf(c->path + c->plen, sizeof c->path - c->plen, "%s%s",
                               c->plen ? "." : "", seg)
                    : snprintf(c->path + c->plen, sizeof c->path - c->plen, "[%d]", index);
        if (w > 0) c->plen += (size_t)w;
        if (c->plen >= sizeof c->path) c->plen = sizeof c->path - 1;
    }
    return saved;
}

static void path_pop(jctx *c, size_t saved)
{
    c->plen = saved;
    c->path[saved] = '\0';
}

static int jfail(jctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int jfail(jctx *c, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cl_seterr(c->err, c->errlen, CL_EINVAL, "%s: %s", c->plen ? c->path : "(record)", msg);
}

static int avro_fail(jctx *c, const char *what)
{
    return cl_seterr(c->err, c->errlen, CL_ERR, "%s: avro-c %s failed: %s",
                     c->plen ? c->path : "(record)", what, avro_strerror());
}

/* avro-c rejects a NULL buffer even for zero bytes; an empty cl_buf has data == NULL. */
static void *nonnull(const void *p)
{
    static char empty[1];
    return p ? (void *)p : empty;
}

static const char *node_type_name(const node *n)
{
    return n->fullname ? n->fullname : kind_names[n->k];
}

/* JSON string of code points 0..255 -> bytes (Avro's JSON encoding of bytes/fixed). */
static int json_to_bytes(jctx *c, const json_t *j, cl_buf *out)
{
    const unsigned char *s = (const unsigned char *)json_string_value(j);
    size_t len = json_string_length(j);
    cl_buf_reset(out);
    for (size_t i = 0; i < len;) {
        unsigned cp;
        if (s[i] < 0x80) {
            cp = s[i++];
        } else if ((s[i] & 0xE0) == 0xC0 && i + 1 < len) {
            cp = ((unsigned)(s[i] & 0x1F) << 6) | (s[i + 1] & 0x3F);
            i += 2;
        } else {
            return jfail(c, "bytes must be a string of code points 0..255");
        }
        if (cp > 255) return jfail(c, "bytes must be a string of code points 0..255");
        unsigned char b = (unsigned char)cp;
        if (cl_buf_append(out, &b, 1) != CL_OK)
            return cl_seterr(c->err, c->errlen, CL_ENOMEM, "%s: bytes value too large", c->path);
    }
    return CL_OK;
}

static int json_to_double(const json_t *j, double *out)
{
    if (json_is_number(j)) {
        *out = json_number_value(j);
        return 1;
    }
    const char *s = json_string_value(j);
    if (!s) return 0;
    if (strcmp(s, "NaN") == 0)
        *out = NAN;
    else if (strcmp(s, "Infinity") == 0)
        *out = INFINITY;
    else if (strcmp(s, "-Infinity") == 0)
        *out = -INFINITY;
    else
        return 0;
    return 1;
}

/* Fills v (NULL: only checks that j fits n). */
static int fill(jctx *c, const node *n, const json_t *j, avro_value_t *v)
{
    avro_value_t child;
    size_t i, saved;
    int rc;
    double d;
    switch (n->k) {
    case K_NULL:
        if (!json_is_null(j)) return jfail(c, "expected null");
        return v && avro_value_set_null(v) ? avro_fail(c, "set_null") : CL_OK;
    case K_BOOLEAN:
        if (!json_is_boolean(j)) return jfail(c, "expected a boolean");
        return v && avro_value_set_boolean(v, json_is_true(j)) ? avro_fail(c, "set_boolean")
                                                               : CL_OK;
    case K_INT:
        if (!json_is_integer(j) || json_integer_value(j) < INT32_MIN ||
            json_integer_value(j) > INT32_MAX)
            return jfail(c, "expected a 32-bit integer");
        return v && avro_value_set_int(v, (int32_t)json_integer_value(j)) ? avro_fail(c, "set_int")
                                                                          : CL_OK;
    case K_LONG:
        if (!json_is_integer(j)) return jfail(c, "expected an integer");
        return v && avro_value_set_long(v, (int64_t)json_integer_value(j))
                   ? avro_fail(c, "set_long")
                   : CL_OK;
    case K_FLOAT:
    case K_DOUBLE:
        if (!json_to_double(j, &d)) return jfail(c, "expected a number");
        if (!v) return CL_OK;
        rc = n->k == K_FLOAT ? avro_value_set_float(v, (float)d) : avro_value_set_double(v, d);
        return rc ? avro_fail(c, "set_double") : CL_OK;
    case K_STRING:
        if (!json_is_string(j)) return jfail(c, "expected a string");
        return v && avro_value_set_string_len(v, json_string_value(j), json_string_length(j) + 1)
                   ? avro_fail(c, "set_string")
                   : CL_OK;
    case K_BYTES:
    case K_FIXED:
        if (!json_is_string(j)) return jfail(c, "expected a string of byte code points");
        if ((rc = json_to_bytes(c, j, c->scratch)) != CL_OK) return rc;
        if (n->k == K_FIXED && c->scratch->len != (size_t)n->size) {
            char msg[96];
            snprintf(msg, sizeof msg, "fixed %s needs %" PRId64 " bytes, got %zu", n->fullname,
                     n->size, c->scratch->len);
            return jfail(c, "%s", msg);
        }
        if (!v) return CL_OK;
        rc = n->k == K_FIXED ? avro_value_set_fixed(v, nonnull(c->scratch->data), c->scratch->len)
                             : avro_value_set_bytes(v, nonnull(c->scratch->data), c->scratch->len);
        return rc ? avro_fail(c, "set_bytes") : CL_OK;
    case K_ENUM:
        if (json_is_string(j))
            for (i = 0; i < n->nsymbols; i++)
                if (strcmp(n->symbols[i], json_string_value(j)) == 0)
                    return v && avro_value_set_enum(v, (int)i) ? avro_fail(c, "set_enum") : CL_OK;
        return jfail(c, "expected a symbol of enum %s", n->fullname);
    case K_ARRAY:
        if (!json_is_array(j)) return jfail(c, "expected an array");
        for (i = 0; i < json_array_size(j); i++) {
            saved = path_push(c, NULL, (int)i);
            if (v && avro_value_append(v, &child, NULL))
                rc = avro_fail(c, "append");
            else
                rc = fill(c, n->items, json_array_get(j, i), v ? &child : NULL);
            path_pop(c, saved);
            if (rc != CL_OK) return rc;
        }
        return CL_OK;
    case K_MAP: {
        const char *key;
        const json_t *jv;
        if (!json_is_object(j)) return jfail(c, "expected an object (map)");
        json_object_foreach((json_t *)j, key, jv)
        {
            saved = path_push(c, key, 0);
            if (v && avro_value_add(v, key, &child, NULL, NULL))
                rc = avro_fail(c, "map add");
            else
                rc = fill(c, n->items, jv, v ? &child : NULL);
            path_pop(c, saved);
            if (rc != CL_OK) return rc;
        }
        return CL_OK;
    }
    case K_RECORD: {
        const char *key;
        const json_t *jv;
        if (!json_is_object(j)) return jfail(c, "expected an object (record %s)", n->fullname);
        json_object_foreach((json_t *)j, key, jv)
        {
            for (i = 0; i < n->nfields; i++)
                if (strcmp(n->fields[i].name, key) == 0) break;
            if (i == n->nfields) {
                saved = path_push(c, key, 0);
                rc = jfail(c, "no such field in record %s", n->fullname);
                path_pop(c, saved);
                return rc;
            }
        }
        for (i = 0; i < n->nfields; i++) {
            const field *f = &n->fields[i];
            const json_t *fj = json_object_get(j, f->name);
            saved = path_push(c, f->name, 0);
            if (!fj && !f->def)
                rc = jfail(c, "missing, and the field has no default");
            else if (v && avro_value_get_by_index(v, i, &child, NULL))
                rc = avro_fail(c, "get_by_index");
            else
                rc = fill(c, f->type, fj ? fj : f->def, v ? &child : NULL);
            path_pop(c, saved);
            if (rc != CL_OK) return rc;
        }
        return CL_OK;
    }
    case K_UNION: {
        int chosen = -1;
        const json_t *inner = j;
        if (json_is_object(j) && json_object_size(j) == 1) {
            const char *key = json_object_iter_key(json_object_iter((json_t *)j));
            for (i = 0; i < n->nbranches && chosen < 0; i++) {
                const node *b = n->branches[i];
                if (strcmp(key, kind_names[b->k]) == 0 ||
                    (b->fullname && (strcmp(key, b->fullname) == 0 || strcmp(key, b->name) == 0)))
                    chosen = (int)i;
            }
            if (chosen >= 0) {
                inner = json_object_iter_value(json_object_iter((json_t *)j));
                if (fill(c, n->branches[chosen], inner, NULL) != CL_OK)
                    chosen = -1, inner = j; /* maybe a bare map/record that looks tagged */
            }
        }
        for (i = 0; i < n->nbranches && chosen < 0; i++)
            if (fill(c, n->branches[i], j, NULL) == CL_OK) chosen = (int)i;
        if (chosen < 0) return jfail(c, "value matches no branch of the union");
        if (!v) return CL_OK;
        if (avro_value_set_branch(v, chosen, &child)) return avro_fail(c, "set_branch");
        return fill(c, n->branches[chosen], inner, &child);
    }
    }
    return jfail(c, "internal: unknown schema node");
}

int cl_avro_value_from_json(avro_value_t *value, const cl_avro_schema *schema, const json_t *json,
                            char *err, size_t errlen)
{
    cl_buf scratch;
    cl_buf_init(&scratch, MAX_DATUM_BYTES);
    jctx c = {.err = err, .errlen = errlen, .scratch = &scratch};
    int rc = fill(&c, schema->root, json, NULL); /* check first: never leave a half-filled value */
    if (rc == CL_OK) {
        avro_value_reset(value);
        rc = fill(&c, schema->root, json, value);
    }
    cl_buf_free(&scratch);
    return rc;
}

static json_t *double_to_json(double d)
{
    if (isnan(d)) return json_string("NaN");
    if (isinf(d)) return json_string(d > 0 ? "Infinity" : "-Infinity");
    return json_real(d);
}

static json_t *bytes_to_json(const uint8_t *p, size_t len)
{
    char *s = malloc(len * 2 + 1);
    if (!s) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < 0x80) {
            s[o++] = (char)p[i];
        } else {
            s[o++] = (char)(0xC0 | (p[i] >> 6));
            s[o++] = (char)(0x80 | (p[i] & 0x3F));
        }
    }
    json_t *j = json_stringn(s, o);
    free(s);
    return j;
}

static int to_json(jctx *c, const node *n, const avro_value_t *v, json_t **out)
{
    avro_value_t child;
    size_t i, size, saved;
    const void *buf;
    int rc = CL_OK;
    *out = NULL;
    switch (n->k) {
    case K_NULL:
        *out = json_null();
        break;
    case K_BOOLEAN: {
        int b;
        if (avro_value_get_boolean(v, &b)) return avro_fail(c, "get_boolean");
        *out = json_boolean(b);
        break;
    }
    case K_INT: {
        int32_t x;
        if (avro_value_get_int(v, &x)) return avro_fail(c, "get_int");
        *out = json_integer(x);
        break;
    }
    case K_LONG: {
        int64_t x;
        if (avro_value_get_long(v, &x)) return avro_fail(c, "get_long");
        *out = json_integer(x);
        break;
    }
    case K_FLOAT: {
        float x;
        if (avro_value_get_float(v, &x)) return avro_fail(c, "get_float");
        *out = double_to_json(x);
        break;
    }
    case K_DOUBLE: {
        double x;
        if (avro_value_get_double(v, &x)) return avro_fail(c, "get_double");
        *out = double_to_json(x);
        break;
    }
    case K_STRING: {
        const char *s;
        if (avro_value_get_string(v, &s, &size)) return avro_fail(c, "get_string");
        *out = json_stringn(s, size ? size - 1 : 0);
        if (!*out) return jfail(c, "string is not valid UTF-8");
        break;
    }
    case K_BYTES:
        if (avro_value_get_bytes(v, &buf, &size)) return avro_fail(c, "get_bytes");
        *out = bytes_to_json(buf, size);
        break;
    case K_FIXED:
        if (avro_value_get_fixed(v, &buf, &size)) return avro_fail(c, "get_fixed");
        *out = bytes_to_json(buf, size);
        break;
    case K_ENUM: {
        int e;
        if (avro_value_get_enum(v, &e)) return avro_fail(c, "get_enum");
        if (e < 0 || (size_t)e >= n->nsymbols)
            return jfail(c, "enum index out of range in %s", n->fullname);
        *out = json_string(n->symbols[e]);
        break;
    }
    case K_ARRAY:
    case K_MAP:
        if (avro_value_get_size(v, &size)) return avro_fail(c, "get_size");
        *out = n->k == K_ARRAY ? json_array() : json_object();
        for (i = 0; *out && rc == CL_OK && i < size; i++) {
            const char *key = NULL;
            json_t *item;
            if (avro_value_get_by_index(v, i, &child, &key)) rc = avro_fail(c, "get_by_index");
            saved = path_push(c, key, (int)i);
            if (rc == CL_OK && (rc = to_json(c, n->items, &child, &item)) == CL_OK) {
                if ((n->k == K_ARRAY ? json_array_append_new(*out, item)
                                     : json_object_set_new(*out, key, item)) != 0)
                    rc = cl_seterr(c->err, c->errlen, CL_ENOMEM, "%s: out of memory", c->path);
            }
            path_pop(c, saved);
        }
        break;
    case K_RECORD:
        *out = json_object();
        for (i = 0; *out && rc == CL_OK && i < n->nfields; i++) {
            json_t *item;
            saved = path_push(c, n->fields[i].name, 0);
            if (avro_value_get_by_index(v, i, &child, NULL))
                rc = avro_fail(c, "get_by_index");
            else if ((rc = to_json(c, n->fields[i].type, &child, &item)) == CL_OK &&
                     json_object_set_new(*out, n->fields[i].name, item) != 0)
                rc = cl_seterr(c->err, c->errlen, CL_ENOMEM, "%s: out of memory", c->path);
            path_pop(c, saved);
        }
        break;
    case K_UNION: {
        int d;
        json_t *inner;
        if (avro_value_get_discriminant(v, &d) || avro_value_get_current_branch(v, &child))
            return avro_fail(c, "union branch");
        if (d < 0 || (size_t)d >= n->nbranches) return jfail(c, "union has no branch selected");
        const node *b = n->branches[d];
        if (b->k == K_NULL) {
            *out = json_null();
            break;
        }
        if ((rc = to_json(c, b, &child, &inner)) != CL_OK) return rc;
        *out = json_object();
        if (*out && json_object_set_new(*out, node_type_name(b), inner) != 0)
            rc = cl_seterr(c->err, c->errlen, CL_ENOMEM, "out of memory");
        break;
    }
    }
    if (rc == CL_OK && !*out)
        rc = cl_seterr(c->err, c->errlen, CL_ENOMEM, "%s: out of memory building JSON",
                       c->plen ? c->path : "(record)");
    if (rc != CL_OK) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

int cl_avro_value_to_json(const avro_value_t *value, const cl_avro_schema *schema, json_t **out,
                          char *err, size_t errlen)
{
    jctx c = {.err = err, .errlen = errlen};
    return to_json(&c, schema->root, value, out);
}

/* ===================================================================================
 * Resolution plans: writer node tree -> reader node tree
 * =================================================================================== */

typedef enum {
    P_ERROR,   /* cannot resolve; message says why (raised only if data takes this path) */
    P_SAME,    /* same primitive */
    P_PROMOTE, /* int->long/float/double, long->float/double, float->double, string<->bytes */
    P_FIXED,
    P_ENUM,
    P_RECORD,
    P_ARRAY,
    P_MAP,
    P_WUNION, /* writer is a union: per writer branch */
    P_RUNION, /* reader is a union, writer is not: one reader branch */
} plan_kind;

typedef struct plan plan;

typedef struct {
    int windex; /* writer field index, or -1: take the default */
    plan *sub;
    const json_t *def; /* reader default (borrowed from the reader schema document) */
    const node *rtype;
    const char *name;
} plan_field;

struct plan {
    plan_kind k;
    const node *w, *r;
    char *error;
    plan_field *fields;
    size_t nfields;
    int *enum_map; /* writer symbol index -> reader symbol index or -1 */
    plan *items;
    plan **branches;
    size_t nbranches;
    int rbranch;
    plan *sub;
};

typedef struct {
    plan **v;
    size_t n, cap;
    int oom;
} planner;

static void plan_free(plan *p)
{
    free(p->error);
    free(p->fields);
    free(p->enum_map);
    free(p->branches);
    free(p);
}

static void planner_free(planner *pl)
{
    for (size_t i = 0; i < pl->n; i++)
        plan_free(pl->v[i]);
    free(pl->v);
    memset(pl, 0, sizeof *pl);
}

static plan *plan_new(planner *pl, plan_kind k, const node *w, const node *r)
{
    if (pl->n == pl->cap) {
        size_t cap = pl->cap ? pl->cap * 2 : 16;
        plan **v = realloc(pl->v, cap * sizeof *v);
        if (!v) return pl->oom = 1, NULL;
        pl->v = v;
        pl->cap = cap;
    }
    plan *p = calloc(1, sizeof *p);
    if (!p) return pl->oom = 1, NULL;
    p->k = k;
    p->w = w;
    p->r = r;
    pl->v[pl->n++] = p;
    return p;
}

static plan *plan_error(planner *pl, const node *w, const node *r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static plan *plan_error(planner *pl, const node *w, const node *r, const char *fmt, ...)
{
    plan *p = plan_new(pl, P_ERROR, w, r);
    if (!p) return NULL;
    char msg[CL_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->error = strdup(msg);
    if (!p->error) pl->oom = 1;
    return p;
}

static int names_match(const node *w, const node *r)
{
    if (strcmp(w->name, r->name) == 0 || strcmp(w->fullname, r->fullname) == 0) return 1;
    for (size_t i = 0; i < r->naliases; i++) {
        const char *a = r->aliases[i];
        const char *dot = strrchr(a, '.');
        if (strcmp(a, w->fullname) == 0 || strcmp(dot ? dot + 1 : a, w->name) == 0) return 1;
    }
    return 0;
}

static int promotable(kind w, kind r)
{
    switch (w) {
    case K_INT:
        return r == K_LONG || r == K_FLOAT || r == K_DOUBLE;
    case K_LONG:
        return r == K_FLOAT || r == K_DOUBLE;
    case K_FLOAT:
        return r == K_DOUBLE;
    case K_STRING:
        return r == K_BYTES;
    case K_BYTES:
        return r == K_STRING;
    default:
        return 0;
    }
}

static int same_type(const node *w, const node *r)
{
    if (w->k != r->k) return 0;
    if (w->k == K_RECORD || w->k == K_ENUM || w->k == K_FIXED) return names_match(w, r);
    return 1;
}

static plan *build_plan(planner *pl, const node *w, const node *r);

static plan *build_record(planner *pl, const node *w, const node *r)
{
    plan *p = plan_new(pl, P_RECORD, w, r);
    if (!p) return NULL;
    p->fields = calloc(r->nfields ? r->nfields : 1, sizeof *p->fields);
    if (!p->fields) return pl->oom = 1, NULL;
    p->nfields = r->nfields;
    for (size_t i = 0; i < r->nfields; i++) {
        const field *rf = &r->fields[i];
        plan_field *pf = &p->fields[i];
        pf->windex = -1;
        pf->rtype = rf->type;
        pf->name = rf->name;
        for (size_t k = 0; k < w->nfields && pf->windex < 0; k++) {
            if (strcmp(w->fields[k].name, rf->name) == 0) pf->windex = (int)k;
            for (size_t a = 0; a < rf->naliases && pf->windex < 0; a++)
                if (strcmp(w->fields[k].name, rf->aliases[a]) == 0) pf->windex = (int)k;
        }
        if (pf->windex >= 0) {
            pf->sub = build_plan(pl, w->fields[pf->windex].type, rf->type);
            if (!pf->sub) return NULL;
            if (pf->sub->k == P_ERROR) {
                plan *e =
                    plan_error(pl, w, r, "field %s.%s: %s", r->fullname, rf->name, pf->sub->error);
                if (e) /* the record plan may be referenced recursively: turn it into the error */
                    p->k = P_ERROR, p->error = e->error, e->error = NULL;
                return p;
            }
            continue;
        }
        if (!rf->def) {
            char msg[CL_ERRLEN];
            snprintf(msg, sizeof msg,
                     "field %s.%s: missing from the writer schema and has no default", r->fullname,
                     rf->name);
            p->k = P_ERROR;
            p->error = strdup(msg);
            if (!p->error) pl->oom = 1;
            return p;
        }
        /* Check the default once here, so applying it per record cannot fail. */
        char err[CL_ERRLEN];
        cl_buf scratch;
        cl_buf_init(&scratch, MAX_DATUM_BYTES);
        jctx c = {.err = err, .errlen = sizeof err, .scratch = &scratch};
        int rc = fill(&c, rf->type, rf->def, NULL);
        cl_buf_free(&scratch);
        if (rc != CL_OK) {
            char msg[CL_ERRLEN + 64];
            snprintf(msg, sizeof msg, "field %s.%s: invalid default: %s", r->fullname, rf->name,
                     err);
            p->k = P_ERROR;
            p->error = strdup(msg);
            if (!p->error) pl->oom = 1;
            return p;
        }
        pf->def = rf->def;
    }
    return p;
}

static plan *build_plan(planner *pl, const node *w, const node *r)
{
    for (size_t i = 0; i < pl->n; i++) /* memo: recursive schemas and shared named types */
        if (pl->v[i]->w == w && pl->v[i]->r == r) return pl->v[i];
    plan *p;
    if (w->k == K_UNION) {
        if (!(p = plan_new(pl, P_WUNION, w, r))) return NULL;
        if (!(p->branches = calloc(w->nbranches, sizeof *p->branches))) return pl->oom = 1, NULL;
        p->nbranches = w->nbranches;
        int any = 0;
        for (size_t i = 0; i < w->nbranches; i++) {
            if (!(p->branches[i] = build_plan(pl, w->branches[i], r))) return NULL;
            any |= p->branches[i]->k != P_ERROR;
        }
        if (!any) {
            p->k = P_ERROR;
            p->error = strdup(p->branches[0]->error);
            if (!p->error) pl->oom = 1;
        }
        return p;
    }
    if (r->k == K_UNION) {
        int chosen = -1;
        for (size_t i = 0; i < r->nbranches && chosen < 0; i++)
            if (same_type(w, r->branches[i])) chosen = (int)i;
        for (size_t i = 0; i < r->nbranches && chosen < 0; i++)
            if (promotable(w->k, r->branches[i]->k)) chosen = (int)i;
        if (chosen < 0)
            return plan_error(pl, w, r, "writer type %s matches no branch of the reader union",
                              node_type_name(w));
        if (!(p = plan_new(pl, P_RUNION, w, r))) return NULL;
        p->rbranch = chosen;
        if (!(p->sub = build_plan(pl, w, r->branches[chosen]))) return NULL;
        if (p->sub->k == P_ERROR) {
            p->k = P_ERROR;
            if (!(p->error = strdup(p->sub->error))) pl->oom = 1;
        }
        return p;
    }
    if (w->k <= K_STRING && w->k == r->k) return plan_new(pl, P_SAME, w, r);
    if (promotable(w->k, r->k)) return plan_new(pl, P_PROMOTE, w, r);
    if (w->k != r->k ||
        ((w->k == K_RECORD || w->k == K_ENUM || w->k == K_FIXED) && !names_match(w, r)))
        return plan_error(pl, w, r, "writer type %s cannot be read as reader type %s",
                          node_type_name(w), node_type_name(r));
    switch (w->k) {
    case K_FIXED:
        if (w->size != r->size)
            return plan_error(pl, w, r, "fixed %s: writer size %" PRId64 ", reader size %" PRId64,
                              r->fullname, w->size, r->size);
        return plan_new(pl, P_FIXED, w, r);
    case K_ENUM:
        if (!(p = plan_new(pl, P_ENUM, w, r))) return NULL;
        if (!(p->enum_map = malloc(w->nsymbols * sizeof *p->enum_map))) return pl->oom = 1, NULL;
        for (size_t i = 0; i < w->nsymbols; i++) {
            p->enum_map[i] = -1;
            for (size_t k = 0; k < r->nsymbols; k++)
                if (strcmp(w->symbols[i], r->symbols[k]) == 0) p->enum_map[i] = (int)k;
            if (p->enum_map[i] < 0)
                p->enum_map[i] = r->enum_default; /* may stay -1: error if the symbol occurs */
        }
        return p;
    case K_RECORD:
        return build_record(pl, w, r);
    case K_ARRAY:
    case K_MAP:
        if (!(p = plan_new(pl, w->k == K_ARRAY ? P_ARRAY : P_MAP, w, r))) return NULL;
        if (!(p->items = build_plan(pl, w->items, r->items))) return NULL;
        if (p->items->k == P_ERROR) {
            p->k = P_ERROR;
            if (!(p->error = strdup(p->items->error))) pl->oom = 1;
        }
        return p;
    default:
        return plan_error(pl, w, r, "internal: unexpected schema kind");
    }
}

typedef struct {
    jctx j;
    cl_buf *scratch;
} actx;

static int apply(actx *a, const plan *p, avro_value_t *src, avro_value_t *dst)
{
    jctx *c = &a->j;
    avro_value_t sc, dc;
    size_t i, size;
    int rc;
    switch (p->k) {
    case P_ERROR:
        return cl_seterr(c->err, c->errlen, CL_EINVAL, "schema resolution failed: %s", p->error);
    case P_SAME:
        switch (p->w->k) {
        case K_NULL:
            return avro_value_set_null(dst) ? avro_fail(c, "set_null") : CL_OK;
        case K_BOOLEAN: {
            int b;
            return avro_value_get_boolean(src, &b) || avro_value_set_boolean(dst, b)
                       ? avro_fail(c, "copy boolean")
                       : CL_OK;
        }
        case K_INT: {
            int32_t x;
            return avro_value_get_int(src, &x) || avro_value_set_int(dst, x)
                       ? avro_fail(c, "copy int")
                       : CL_OK;
        }
        case K_LONG: {
            int64_t x;
            return avro_value_get_long(src, &x) || avro_value_set_long(dst, x)
                       ? avro_fail(c, "copy long")
                       : CL_OK;
        }
        case K_FLOAT: {
            float x;
            return avro_value_get_float(src, &x) || avro_value_set_float(dst, x)
                       ? avro_fail(c, "copy float")
                       : CL_OK;
        }
        case K_DOUBLE: {
            double x;
            return avro_value_get_double(src, &x) || avro_value_set_double(dst, x)
                       ? avro_fail(c, "copy double")
                       : CL_OK;
        }
        case K_BYTES: {
            const void *b;
            return avro_value_get_bytes(src, &b, &size) ||
                           avro_value_set_bytes(dst, nonnull(b), size)
                       ? avro_fail(c, "copy bytes")
                       : CL_OK;
        }
        case K_STRING: {
            const char *s;
            return avro_value_get_string(src, &s, &size) || avro_value_set_string_len(dst, s, size)
                       ? avro_fail(c, "copy string")
                       : CL_OK;
        }
        default:
            break;
        }
        return avro_fail(c, "copy");
    case P_PROMOTE: {
        double d = 0;
        int32_t i32;
        int64_t i64;
        float f;
        if (p->w->k == K_STRING && p->r->k == K_BYTES) {
            const char *s;
            return avro_value_get_string(src, &s, &size) ||
                           avro_value_set_bytes(dst, nonnull(s), size ? size - 1 : 0)
                       ? avro_fail(c, "string->bytes")
                       : CL_OK;
        }
        if (p->w->k == K_BYTES && p->r->k == K_STRING) {
            const void *b;
            const char nul = '\0';
            if (avro_value_get_bytes(src, &b, &size)) return avro_fail(c, "get_bytes");
            cl_buf_reset(a->scratch);
            if (cl_buf_append(a->scratch, b, size) != CL_OK || cl_buf_append(a->scratch, &nul, 1))
                return cl_seterr(c->err, c->errlen, CL_ENOMEM, "bytes->string: out of memory");
            return avro_value_set_string_len(dst, a->scratch->data, size + 1)
                       ? avro_fail(c, "bytes->string")
                       : CL_OK;
        }
        if (p->w->k == K_INT) {
            if (avro_value_get_int(src, &i32)) return avro_fail(c, "get_int");
            if (p->r->k == K_LONG)
                return avro_value_set_long(dst, i32) ? avro_fail(c, "int->long") : CL_OK;
            d = i32;
        } else if (p->w->k == K_LONG) {
            if (avro_value_get_long(src, &i64)) return avro_fail(c, "get_long");
            d = (double)i64;
        } else {
            if (avro_value_get_float(src, &f)) return avro_fail(c, "get_float");
            d = f;
        }
        rc = p->r->k == K_FLOAT ? avro_value_set_float(dst, (float)d)
                                : avro_value_set_double(dst, d);
        return rc ? avro_fail(c, "numeric promotion") : CL_OK;
    }
    case P_FIXED: {
        const void *b;
        return avro_value_get_fixed(src, &b, &size) || avro_value_set_fixed(dst, nonnull(b), size)
                   ? avro_fail(c, "copy fixed")
                   : CL_OK;
    }
    case P_ENUM: {
        int e;
        if (avro_value_get_enum(src, &e)) return avro_fail(c, "get_enum");
        if (e < 0 || (size_t)e >= p->w->nsymbols) return jfail(c, "enum index out of range");
        if (p->enum_map[e] < 0)
            return cl_seterr(c->err, c->errlen, CL_EINVAL,
                             "schema resolution failed: %s: symbol '%s' is not in the reader's "
                             "enum %s, which has no default",
                             c->plen ? c->path : "(record)", p->w->symbols[e], p->r->fullname);
        return avro_value_set_enum(dst, p->enum_map[e]) ? avro_fail(c, "set_enum") : CL_OK;
    }
    case P_RECORD:
        for (i = 0; i < p->nfields; i++) {
            const plan_field *pf = &p->fields[i];
            size_t saved = path_push(c, pf->name, 0);
            if (avro_value_get_by_index(dst, i, &dc, NULL))
                rc = avro_fail(c, "get_by_index");
            else if (pf->windex < 0)
                rc = fill(c, pf->rtype, pf->def, &dc);
            else if (avro_value_get_by_index(src, (size_t)pf->windex, &sc, NULL))
                rc = avro_fail(c, "get_by_index");
            else
                rc = apply(a, pf->sub, &sc, &dc);
            path_pop(c, saved);
            if (rc != CL_OK) return rc;
        }
        return CL_OK;
    case P_ARRAY:
    case P_MAP:
        if (avro_value_get_size(src, &size)) return avro_fail(c, "get_size");
        for (i = 0; i < size; i++) {
            const char *key = NULL;
            if (avro_value_get_by_index(src, i, &sc, &key)) return avro_fail(c, "get_by_index");
            if (p->k == P_ARRAY ? avro_value_append(dst, &dc, NULL)
                                : avro_value_add(dst, key, &dc, NULL, NULL))
                return avro_fail(c, "append");
            if ((rc = apply(a, p->items, &sc, &dc)) != CL_OK) return rc;
        }
        return CL_OK;
    case P_WUNION: {
        int d;
        if (avro_value_get_discriminant(src, &d) || avro_value_get_current_branch(src, &sc))
            return avro_fail(c, "union branch");
        if (d < 0 || (size_t)d >= p->nbranches) return jfail(c, "union branch out of range");
        return apply(a, p->branches[d], &sc, dst);
    }
    case P_RUNION:
        if (avro_value_set_branch(dst, p->rbranch, &dc)) return avro_fail(c, "set_branch");
        return apply(a, p->sub, src, &dc);
    }
    return avro_fail(c, "internal: unknown plan");
}

/* ===================================================================================
 * Codec
 * =================================================================================== */

typedef struct {
    uint64_t fingerprint;
    const cl_avro_schema *schema; /* borrowed from the set, or == owned */
    cl_avro_schema *owned;        /* fetched from the registry */
    avro_value_iface_t *iface;    /* NULL when the writer is the reader schema */
    avro_value_t value;
    planner pl;
    plan *root;
} writer_entry;

typedef struct {
    int32_t id;
    uint64_t fingerprint;
} id_entry;

struct cl_avro_codec {
    const cl_avro_schemas *set;
    const cl_avro_schema *schema;
    cl_avro_framing framing;
    cl_registry *registry;
    char *subject;
    int32_t schema_id; /* for Confluent encoding; 0 until registered */
    avro_value_iface_t *iface;
    avro_value_t enc_value, dec_value;
    avro_writer_t writer;
    avro_reader_t reader;
    char *scratch;
    size_t scratch_cap;
    cl_buf tmp;
    writer_entry writers[MAX_WRITERS];
    size_t nwriters, next_evict;
    id_entry ids[MAX_IDS];
    size_t nids;
    const cl_avro_schema *last_writer;
};

static void writer_entry_clear(writer_entry *w)
{
    if (w->iface) {
        avro_value_decref(&w->value);
        avro_value_iface_decref(w->iface);
    }
    planner_free(&w->pl);
    cl_avro_schema_free(w->owned);
    memset(w, 0, sizeof *w);
}

void cl_avro_codec_free(cl_avro_codec *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->nwriters; i++)
        writer_entry_clear(&c->writers[i]);
    if (c->iface) {
        avro_value_decref(&c->enc_value);
        avro_value_decref(&c->dec_value);
        avro_value_iface_decref(c->iface);
    }
    if (c->writer) avro_writer_free(c->writer);
    if (c->reader) avro_reader_free(c->reader);
    free(c->scratch);
    free(c->subject);
    cl_buf_free(&c->tmp);
    free(c);
}

int cl_avro_codec_new(cl_avro_codec **out, const cl_avro_schemas *set, const char *record_name,
                      const cl_avro_codec_opts *opts, char *err, size_t errlen)
{
    static const cl_avro_codec_opts defaults = {0};
    *out = NULL;
    if (!opts) opts = &defaults;
    const cl_avro_schema *s = cl_avro_schemas_find(set, record_name);
    if (!s)
        return cl_seterr(err, errlen, CL_ENOTFOUND,
                         "no schema for record '%s' among the loaded .avsc files", record_name);
    cl_avro_codec *c = calloc(1, sizeof *c);
    if (!c) return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    c->set = set;
    c->schema = s;
    c->registry = opts->registry;
    c->framing = opts->framing != CL_AVRO_FRAMING_AUTO ? opts->framing
                 : opts->registry                      ? CL_AVRO_FRAMING_CONFLUENT
                                                       : CL_AVRO_FRAMING_SINGLE_OBJECT;
    c->schema_id = opts->schema_id > 0 ? opts->schema_id : 0;
    cl_buf_init(&c->tmp, MAX_DATUM_BYTES);
    if (opts->subject && !(c->subject = strdup(opts->subject))) {
        cl_avro_codec_free(c);
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    }
    if (c->schema_id > 0) {
        c->ids[0].id = c->schema_id;
        c->ids[0].fingerprint = s->fingerprint;
        c->nids = 1;
    }
    c->iface = avro_generic_class_from_schema(s->avro);
    if (!c->iface || avro_generic_value_new(c->iface, &c->enc_value) != 0) {
        if (c->iface) avro_value_iface_decref(c->iface);
        c->iface = NULL;
        cl_avro_codec_free(c);
        return cl_seterr(err, errlen, CL_ERR, "%s: cannot create an avro-c value: %s", record_name,
                         avro_strerror());
    }
    if (avro_generic_value_new(c->iface, &c->dec_value) != 0) {
        avro_value_decref(&c->enc_value);
        avro_value_iface_decref(c->iface);
        c->iface = NULL;
        cl_avro_codec_free(c);
        return cl_seterr(err, errlen, CL_ERR, "%s: cannot create an avro-c value: %s", record_name,
                         avro_strerror());
    }
    c->writer = avro_writer_memory(NULL, 0);
    c->reader = avro_reader_memory(NULL, 0);
    if (!c->writer || !c->reader) {
        cl_avro_codec_free(c);
        return cl_seterr(err, errlen, CL_ENOMEM, "out of memory");
    }
    *out = c;
    return CL_OK;
}

const cl_avro_schema *cl_avro_codec_schema(const cl_avro_codec *c)
{
    return c->schema;
}
const cl_avro_schema *cl_avro_codec_last_writer(const cl_avro_codec *c)
{
    return c->last_writer;
}

avro_value_t *cl_avro_codec_value(cl_avro_codec *c)
{
    avro_value_reset(&c->enc_value);
    return &c->enc_value;
}

int cl_avro_codec_encode(cl_avro_codec *c, avro_value_t *value, cl_buf *out, char *err,
                         size_t errlen)
{
    uint8_t hdr[CL_AVRO_SINGLE_OBJECT_HEADER_LEN];
    size_t hlen, size;
    int rc;
    if (c->framing == CL_AVRO_FRAMING_CONFLUENT) {
        if (c->schema_id <= 0) {
            int32_t id;
            if (!c->registry || !c->subject)
                return cl_seterr(err, errlen, CL_EINVAL,
                                 "cannot encode %s in Confluent framing: it needs a schema "
                                 "registry and a subject, or a fixed schema id",
                                 c->schema->root->fullname);
            rc = cl_registry_register(c->registry, c->subject, c->schema->text, &id, err, errlen);
            if (rc != CL_OK) return rc;
            c->schema_id = id;
            if (c->nids < MAX_IDS) c->ids[c->nids++] = (id_entry){id, c->schema->fingerprint};
        }
        hdr[0] = 0x00;
        hdr[1] = (uint8_t)((uint32_t)c->schema_id >> 24);
        hdr[2] = (uint8_t)((uint32_t)c->schema_id >> 16);
        hdr[3] = (uint8_t)((uint32_t)c->schema_id >> 8);
        hdr[4] = (uint8_t)c->schema_id;
        hlen = CL_AVRO_CONFLUENT_HEADER_LEN;
    } else {
        hdr[0] = 0xC3;
        hdr[1] = 0x01;
        for (int i = 0; i < 8; i++)
            hdr[2 + i] = (uint8_t)(c->schema->fingerprint >> (8 * i));
        hlen = CL_AVRO_SINGLE_OBJECT_HEADER_LEN;
    }
    if (avro_value_sizeof(value, &size) != 0)
        return cl_seterr(err, errlen, CL_EINVAL, "cannot encode %s: %s", c->schema->root->fullname,
                         avro_strerror());
    if (size > MAX_DATUM_BYTES)
        return cl_seterr(err, errlen, CL_ENOMEM, "cannot encode %s: %zu bytes exceed the %u limit",
                         c->schema->root->fullname, size, MAX_DATUM_BYTES);
    if (size > c->scratch_cap) {
        size_t cap = size < 1024 ? 1024 : size;
        char *p = realloc(c->scratch, cap);
        if (!p)
            return cl_seterr(err, errlen, CL_ENOMEM, "cannot encode %s: out of memory",
                             c->schema->root->fullname);
        c->scratch = p;
        c->scratch_cap = cap;
    }
    avro_writer_memory_set_dest(c->writer, c->scratch, (int64_t)size);
    if (avro_value_write(c->writer, value) != 0)
        return cl_seterr(err, errlen, CL_EINVAL, "cannot encode %s: %s", c->schema->root->fullname,
                         avro_strerror());
    if ((rc = cl_buf_append(out, hdr, hlen)) != CL_OK ||
        (rc = cl_buf_append(out, c->scratch, size)) != CL_OK)
        return cl_seterr(err, errlen, rc, "encoded %s does not fit the output buffer",
                         c->schema->root->fullname);
    return CL_OK;
}

/* Finds or creates the writer entry for a schema and compiles its resolution plan. */
static int writer_for_schema(cl_avro_codec *c, const cl_avro_schema *ws, cl_avro_schema *owned,
                             writer_entry **out, char *err, size_t errlen)
{
    size_t slot;
    int rc = CL_OK;
    if (c->nwriters < MAX_WRITERS) {
        slot = c->nwriters++;
    } else { /* a producer cycling through >64 schema versions: recycle slots in turn */
        slot = c->next_evict++ % MAX_WRITERS;
        if (c->last_writer == c->writers[slot].schema) c->last_writer = NULL;
        writer_entry_clear(&c->writers[slot]);
    }
    writer_entry *w = &c->writers[slot];
    memset(w, 0, sizeof *w);
    w->fingerprint = ws->fingerprint;
    w->schema = ws;
    w->owned = owned;
    if (ws->fingerprint != c->schema->fingerprint) {
        w->iface = avro_generic_class_from_schema(ws->avro);
        if (!w->iface || avro_generic_value_new(w->iface, &w->value) != 0) {
            if (w->iface) avro_value_iface_decref(w->iface);
            w->iface = NULL;
            rc = cl_seterr(err, errlen, CL_ERR, "writer schema %s: cannot create a value: %s",
                           ws->origin, avro_strerror());
        } else if (!(w->root = build_plan(&w->pl, ws->root, c->schema->root)) || w->pl.oom) {
            rc = cl_seterr(err, errlen, CL_ENOMEM, "writer schema %s: out of memory", ws->origin);
        }
        if (rc != CL_OK) {
            writer_entry_clear(w); /* also frees `owned` */
            if (slot + 1 == c->nwriters) c->nwriters--;
            return rc;
        }
    }
    *out = w;
    return CL_OK;
}

static writer_entry *cached_writer(cl_avro_codec *c, uint64_t fp)
{
    for (size_t i = 0; i < c->nwriters; i++)
        if (c->writers[i].schema && c->writers[i].fingerprint == fp) return &c->writers[i];
    return NULL;
}

static int writer_by_fingerprint(cl_avro_codec *c, uint64_t fp, writer_entry **out, char *err,
                                 size_t errlen)
{
    if ((*out = cached_writer(c, fp)) != NULL) return CL_OK;
    const cl_avro_schema *ws =
        fp == c->schema->fingerprint ? c->schema : cl_avro_schemas_by_fingerprint(c->set, fp);
    if (!ws)
        return cl_seterr(err, errlen, CL_ENOTFOUND,
                         "unknown writer schema fingerprint %016" PRIx64
                         ": no loaded .avsc (current or history/) has it",
                         fp);
    return writer_for_schema(c, ws, NULL, out, err, errlen);
}

static int writer_by_id(cl_avro_codec *c, int32_t id, writer_entry **out, char *err, size_t errlen)
{
    for (size_t i = 0; i < c->nids; i++)
        if (c->ids[i].id == id)
            return writer_by_fingerprint(c, c->ids[i].fingerprint, out, err, errlen);
    if (!c->registry)
        return cl_seterr(err, errlen, CL_ENOTFOUND,
                         "Confluent schema id %" PRId32 " is unknown and no schema registry is "
                         "configured (schema.registry.url)",
                         id);
    const char *text;
    int rc = cl_registry_schema_by_id(c->registry, id, &text, err, errlen);
    if (rc != CL_OK) return rc;
    char origin[64];
    snprintf(origin, sizeof origin, "registry schema id %" PRId32, id);
    cl_avro_schema *parsed;
    if ((rc = cl_avro_schema_parse(text, strlen(text), origin, &parsed, err, errlen)) != CL_OK)
        return rc == CL_ENOMEM ? rc : CL_EINVAL;
    uint64_t fp = parsed->fingerprint;
    if (c->nids < MAX_IDS) c->ids[c->nids++] = (id_entry){id, fp};
    if ((*out = cached_writer(c, fp)) != NULL) {
        cl_avro_schema_free(parsed);
        return CL_OK;
    }
    const cl_avro_schema *known =
        fp == c->schema->fingerprint ? c->schema : cl_avro_schemas_by_fingerprint(c->set, fp);
    if (known) {
        cl_avro_schema_free(parsed);
        return writer_for_schema(c, known, NULL, out, err, errlen);
    }
    return writer_for_schema(c, parsed, parsed, out, err, errlen);
}

int cl_avro_codec_decode(cl_avro_codec *c, const void *data, size_t len, avro_value_t **out,
                         char *err, size_t errlen)
{
    cl_avro_frame f;
    writer_entry *w;
    int rc;
    *out = NULL;
    if ((rc = cl_avro_frame_parse(data, len, &f, err, errlen)) != CL_OK) return rc;
    rc = f.framing == CL_AVRO_FRAMING_SINGLE_OBJECT
             ? writer_by_fingerprint(c, f.fingerprint, &w, err, errlen)
             : writer_by_id(c, f.schema_id, &w, err, errlen);
    if (rc != CL_OK) return rc;
    char cerr[CL_ERRLEN];
    if (check_datum(w->schema->root, f.datum, f.datum_len, cerr, sizeof cerr) != CL_OK)
        return cl_seterr(err, errlen, CL_EINVAL, "%s (writer schema %s): %s",
                         w->schema->root->fullname, w->schema->origin, cerr);
    avro_reader_memory_set_source(c->reader, (const char *)f.datum, (int64_t)f.datum_len);
    avro_value_t *target = w->iface ? &w->value : &c->dec_value;
    avro_value_reset(target);
    if (avro_value_read(c->reader, target) != 0)
        return cl_seterr(err, errlen, CL_EINVAL, "%s: undecodable datum: %s",
                         w->schema->root->fullname, avro_strerror());
    if (w->iface) {
        actx a = {.j = {.err = err, .errlen = errlen, .scratch = &c->tmp}, .scratch = &c->tmp};
        avro_value_reset(&c->dec_value);
        if ((rc = apply(&a, w->root, &w->value, &c->dec_value)) != CL_OK) return rc;
    }
    c->last_writer = w->schema;
    *out = &c->dec_value;
    return CL_OK;
}
