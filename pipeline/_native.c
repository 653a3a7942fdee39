/*
 * pipeline._native: the per-event hot paths of the collector, the publisher and the
 * worker in C (an optional speedup; see pipeline/native.py).
 *
 * The per-event jobs that cost 5-7 us an event each in Python (cavro included), and
 * 0.5-1.5 us here:
 *
 *   seal(events, seq, prev_hash) -> (seq, hash)
 *       numbers and chains a sandbox's events, as pipeline.collect.chain.ChainHead.seal
 *       does one at a time: seq + 1, prev_hash, hash = SHA-256(prev_hash || canonical).
 *   link(prev_hash, event) -> bytes
 *       one event's hash, for checking a chain (pipeline.collect.chain.link).
 *   canonical(event) -> bytes
 *       the canonical bytes, version 2 (specified in pipeline/chain/hashing.py).
 *   encode_event(event) -> bytes, seal_encode(event, seq, prev_hash) -> bytes
 *       one event's Avro binary (an item of a batch's array), sealed first by the latter.
 *   encode_event_batch(sandbox_id, collector, sent_at, events) -> bytes
 *       the Avro binary body of schemas/audit_event_batch.v2.avsc, byte for byte what
 *       the generic encoder (cavro) writes for it.
 *   decode_event_batch(body) -> dict
 *       its inverse, for the worker: the same dicts cavro reads. The bytes come from
 *       the network, so every read is bounds-checked and corrupt input is a ValueError.
 *
 * The codec follows one fixed schema version: pipeline/schema/registry.py uses it only
 * for the schema whose fingerprint it was written for (pipeline.native
 * EVENT_BATCH_FINGERPRINT), and tests/test_native.py compares every function with its
 * Python reference. Bad input raises ValueError/TypeError/KeyError naming the field;
 * nothing is mutated when an error is raised.
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Init/Update/Final: see seal() */
#include <Python.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>

/* ---- a growable byte buffer ---------------------------------------------------- */

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
} Buf;

static int buf_reserve(Buf *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra) cap *= 2;
    char *data = PyMem_Realloc(b->data, (size_t)cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static int buf_put(Buf *b, const void *src, Py_ssize_t n) {
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->data + b->len, src, (size_t)n);
    b->len += n;
    return 0;
}

static void buf_free(Buf *b) {
    PyMem_Free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---- field names, interned once ------------------------------------------------ */

enum {
    K_EVENT_ID, K_TS, K_TENANT, K_SANDBOX_ID, K_SEQ, K_CATEGORY, K_ACTION, K_LEVEL,
    K_OUTCOME, K_ACTOR, K_USER, K_UID, K_PID, K_PPID, K_PROCESS, K_CMDLINE,
    K_PARENT_PROCESS, K_PARENT_CMDLINE, K_OBJECT, K_BYTES, K_ATTRIBUTES, K_PREV_HASH, K_HASH,
    K_COUNT
};
static const char *KEY_NAMES[K_COUNT] = {
    "event_id", "ts", "tenant", "sandbox_id", "seq", "category", "action", "level",
    "outcome", "actor", "user", "uid", "pid", "ppid", "process", "cmdline",
    "parent_process", "parent_cmdline", "object", "bytes", "attributes", "prev_hash", "hash",
};
static PyObject *KEYS[K_COUNT];

static const char *CATEGORIES[] = {"process", "file", "network", "permission",
    "data_transfer", "config", "api", "auth", "resource", "lifecycle", NULL};
static const char *LEVELS[] = {"debug", "info", "notice", "warning", "error", "critical", NULL};
static const char *OUTCOMES[] = {"success", "failure", "denied", NULL};

static int need_dict(PyObject *obj, const char *what) {
    if (PyDict_Check(obj)) return 0;
    PyErr_Format(PyExc_TypeError, "%s: expected a dict, got %.80s", what, Py_TYPE(obj)->tp_name);
    return -1;
}

/* ---- Avro binary ---------------------------------------------------------------- */

static int avro_long(Buf *b, int64_t value) {
    uint64_t n = ((uint64_t)value << 1) ^ (uint64_t)(value >> 63); /* zigzag */
    if (buf_reserve(b, 10) < 0) return -1;
    unsigned char *out = (unsigned char *)b->data + b->len;
    Py_ssize_t i = 0;
    while (n & ~(uint64_t)0x7F) {
        out[i++] = (unsigned char)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    out[i++] = (unsigned char)n;
    b->len += i;
    return 0;
}

static int as_int64(PyObject *value, const char *name, int64_t *out) {
    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_ValueError, "%s: expected an integer, got %.80s", name,
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow) {
        PyErr_Format(PyExc_ValueError, "%s: %R does not fit in a long", name, value);
        return -1;
    }
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = (int64_t)v;
    return 0;
}

static const char *utf8_of(PyObject *value, const char *name, Py_ssize_t *size) {
    if (!PyUnicode_Check(value)) {
        PyErr_Format(PyExc_ValueError, "%s: expected a string, got %.80s", name,
                     Py_TYPE(value)->tp_name);
        return NULL;
    }
    const char *text = PyUnicode_AsUTF8AndSize(value, size);
    if (text == NULL && PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
        PyErr_Clear(); /* a lone surrogate: no UTF-8 for it */
        PyErr_Format(PyExc_ValueError, "%s: %R is not valid Unicode text", name, value);
    }
    return text;
}

static int avro_string(Buf *b, PyObject *value, const char *name) {
    Py_ssize_t size;
    const char *text = utf8_of(value, name, &size);
    if (text == NULL || avro_long(b, size) < 0) return -1;
    return buf_put(b, text, size);
}

static int avro_long_field(Buf *b, PyObject *value, const char *name) {
    int64_t v;
    if (as_int64(value, name, &v) < 0) return -1;
    return avro_long(b, v);
}

static int avro_enum(Buf *b, PyObject *value, const char *const *symbols, const char *name) {
    Py_ssize_t size;
    const char *text = utf8_of(value, name, &size);
    if (text == NULL) return -1;
    for (int i = 0; symbols[i] != NULL; i++) {
        if ((Py_ssize_t)strlen(symbols[i]) == size && memcmp(symbols[i], text, size) == 0)
            return avro_long(b, i);
    }
    PyErr_Format(PyExc_ValueError, "%s: no enum symbol %R in the schema", name, value);
    return -1;
}

/* ["null", "long"] */
static int avro_optional_long(Buf *b, PyObject *value, const char *name) {
    if (value == NULL || value == Py_None) return avro_long(b, 0);
    if (avro_long(b, 1) < 0) return -1;
    return avro_long_field(b, value, name);
}

/* ["null", Sha256]: fixed 32 bytes */
static int avro_optional_sha256(Buf *b, PyObject *value, const char *name) {
    if (value == NULL || value == Py_None) return avro_long(b, 0);
    if (!PyBytes_Check(value) || PyBytes_GET_SIZE(value) != 32) {
        PyErr_Format(PyExc_ValueError, "%s: expected 32 bytes, got %.80s", name,
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    if (avro_long(b, 1) < 0) return -1;
    return buf_put(b, PyBytes_AS_STRING(value), 32);
}

/* ---- an event's fields, looked up once ------------------------------------------ */

/* The values of an event's fields (and its actor's), each looked up once and held (new
 * references) while the canonical bytes and the Avro binary are written from them: code
 * that runs while they are used (a __str__) cannot free them. NULL: absent. */
typedef struct {
    PyObject *v[K_COUNT];
} Fields;

static const int EVENT_KEYS[] = {K_EVENT_ID, K_TS,      K_TENANT,     K_SANDBOX_ID, K_SEQ,
                                 K_CATEGORY, K_ACTION,  K_LEVEL,      K_OUTCOME,    K_ACTOR,
                                 K_OBJECT,   K_BYTES,   K_ATTRIBUTES, K_PREV_HASH,  K_HASH};
static const int ACTOR_KEYS[] = {K_USER,    K_UID,     K_PID,           K_PPID,
                                 K_PROCESS, K_CMDLINE, K_PARENT_PROCESS, K_PARENT_CMDLINE};
#define V1_ACTOR_KEYS 6 /* the actor's fields in the canonical bytes of every event */

static void release(Fields *f) {
    for (int i = 0; i < K_COUNT; i++) Py_CLEAR(f->v[i]);
}

static int lookup(Fields *f, PyObject *record, const int *keys, int count) {
    for (int i = 0; i < count; i++) {
        PyObject *value = PyDict_GetItemWithError(record, KEYS[keys[i]]);
        if (value == NULL && PyErr_Occurred()) return -1;
        f->v[keys[i]] = Py_XNewRef(value);
    }
    return 0;
}

static int gather(PyObject *event, Fields *f) {
    memset(f, 0, sizeof *f);
    if (need_dict(event, "event") < 0) return -1;
    if (lookup(f, event, EVENT_KEYS, 15) < 0) goto fail;
    PyObject *actor = f->v[K_ACTOR];
    if (actor != NULL && PyDict_Check(actor) && lookup(f, actor, ACTOR_KEYS, 8) < 0) goto fail;
    return 0;
fail:
    release(f);
    return -1;
}

/* ---- Avro binary of an event ----------------------------------------------------- */

/* A required field's value, or an error naming it. */
static PyObject *required(const Fields *f, int key) {
    PyObject *value = f->v[key];
    if (value == NULL)
        PyErr_Format(PyExc_ValueError, "%s: missing (the field has no default)", KEY_NAMES[key]);
    return value;
}

/* A string field with a default: absent means the default. */
static int avro_string_or(Buf *b, PyObject *value, const char *name, const char *dflt) {
    if (value != NULL) return avro_string(b, value, name);
    Py_ssize_t size = (Py_ssize_t)strlen(dflt);
    if (avro_long(b, size) < 0) return -1;
    return buf_put(b, dflt, size);
}

static int avro_actor(Buf *b, const Fields *f) {
    if (need_dict(f->v[K_ACTOR], "actor") < 0) return -1;
    if (avro_string_or(b, f->v[K_USER], "actor.user", "") < 0 ||
        avro_optional_long(b, f->v[K_UID], "actor.uid") < 0 ||
        avro_optional_long(b, f->v[K_PID], "actor.pid") < 0 ||
        avro_optional_long(b, f->v[K_PPID], "actor.ppid") < 0 ||
        avro_string_or(b, f->v[K_PROCESS], "actor.process", "") < 0 ||
        avro_string_or(b, f->v[K_CMDLINE], "actor.cmdline", "") < 0 ||
        avro_string_or(b, f->v[K_PARENT_PROCESS], "actor.parent_process", "") < 0)
        return -1;
    return avro_string_or(b, f->v[K_PARENT_CMDLINE], "actor.parent_cmdline", "");
}

static int avro_attributes(Buf *b, PyObject *attributes) {
    if (attributes == NULL) return avro_long(b, 0);
    if (need_dict(attributes, "attributes") < 0) return -1;
    Py_ssize_t count = PyDict_Size(attributes);
    if (count == 0) return avro_long(b, 0);
    if (avro_long(b, count) < 0) return -1;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(attributes, &pos, &key, &value)) {
        if (avro_string(b, key, "attributes (a key)") < 0) return -1;
        if (avro_string(b, value, "attributes (a value)") < 0) return -1;
    }
    return avro_long(b, 0);
}

/* Values that stand for the event's own seq, prev_hash and hash (a seal not yet written). */
typedef struct {
    PyObject *seq;
    PyObject *prev_hash;
    PyObject *hash;
} Sealed;

/* One AuditEvent (v2), fields in schema order. */
static int avro_fields(Buf *b, const Fields *f, const Sealed *sealed) {
    PyObject *value;
    if ((value = required(f, K_EVENT_ID)) == NULL || avro_string(b, value, "event_id") < 0 ||
        (value = required(f, K_TS)) == NULL || avro_long_field(b, value, "ts") < 0 ||
        (value = required(f, K_TENANT)) == NULL || avro_string(b, value, "tenant") < 0 ||
        (value = required(f, K_SANDBOX_ID)) == NULL || avro_string(b, value, "sandbox_id") < 0)
        return -1;
    value = sealed != NULL ? sealed->seq : required(f, K_SEQ);
    if (value == NULL || avro_long_field(b, value, "seq") < 0) return -1;
    if ((value = required(f, K_CATEGORY)) == NULL ||
        avro_enum(b, value, CATEGORIES, "category") < 0 ||
        (value = required(f, K_ACTION)) == NULL || avro_string(b, value, "action") < 0)
        return -1;
    value = f->v[K_LEVEL];
    if ((value != NULL ? avro_enum(b, value, LEVELS, "level") : avro_long(b, 1)) < 0) return -1;
    value = f->v[K_OUTCOME];
    if ((value != NULL ? avro_enum(b, value, OUTCOMES, "outcome") : avro_long(b, 0)) < 0)
        return -1;
    if (required(f, K_ACTOR) == NULL || avro_actor(b, f) < 0 ||
        avro_string_or(b, f->v[K_OBJECT], "object", "") < 0 ||
        avro_optional_long(b, f->v[K_BYTES], "bytes") < 0 ||
        avro_attributes(b, f->v[K_ATTRIBUTES]) < 0)
        return -1;
    value = sealed != NULL ? sealed->prev_hash : f->v[K_PREV_HASH];
    if (avro_optional_sha256(b, value, "prev_hash") < 0) return -1;
    value = sealed != NULL ? sealed->hash : f->v[K_HASH];
    return avro_optional_sha256(b, value, "hash");
}

static int avro_event(Buf *b, PyObject *event) {
    Fields f;
    if (gather(event, &f) < 0) return -1;
    int rc = avro_fields(b, &f, NULL);
    release(&f);
    return rc;
}

/* Prefix the pending ValueError/TypeError with the event's place: "events.<i>.". */
static void prefix_error(Py_ssize_t index) {
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    int ours = type == PyExc_ValueError || type == PyExc_TypeError;
    PyObject *text = ours && value != NULL ? PyObject_Str(value) : NULL;
    if (text == NULL) {
        PyErr_Restore(type, value, traceback);
        return;
    }
    PyErr_Format(type, "events.%zd.%U", index, text);
    Py_DECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
}

static PyObject *encode_event_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "encode_event_batch(sandbox_id, collector, sent_at, events)");
        return NULL;
    }
    PyObject *events = PySequence_Fast(args[3], "events: expected a sequence");
    if (events == NULL) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(events);
    PyObject **items = PySequence_Fast_ITEMS(events);
    Buf b = {NULL, 0, 0};
    if (buf_reserve(&b, 64 + count * 256) < 0) goto fail;
    if (avro_string(&b, args[0], "sandbox_id") < 0) goto fail;
    if (avro_string(&b, args[1], "collector") < 0) goto fail;
    if (avro_long_field(&b, args[2], "sent_at") < 0) goto fail;
    if (count > 0) {
        if (avro_long(&b, count) < 0) goto fail;
        for (Py_ssize_t i = 0; i < count; i++) {
            if (avro_event(&b, items[i]) < 0) {
                prefix_error(i);
                goto fail;
            }
        }
    }
    if (avro_long(&b, 0) < 0) goto fail;
    PyObject *result = PyBytes_FromStringAndSize(b.data, b.len);
    buf_free(&b);
    Py_DECREF(events);
    return result;
fail:
    buf_free(&b);
    Py_DECREF(events);
    return NULL;
}

/* ---- canonical bytes (pipeline/chain/hashing.py, version 2) ----------------------- */

/* Decimal digits of value into the end of out[24]; returns where they start. */
static char *decimal(long long value, char *end) {
    unsigned long long n = value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value;
    do {
        *--end = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    if (value < 0) *--end = '-';
    return end;
}

static int canon_bytes(Buf *b, const char *text, Py_ssize_t size) {
    char digits[24];
    char *start = decimal(size, digits + sizeof digits);
    Py_ssize_t n = digits + sizeof digits - start;
    if (buf_reserve(b, n + 1 + size) < 0) return -1;
    memcpy(b->data + b->len, start, (size_t)n);
    b->data[b->len + n] = ':';
    memcpy(b->data + b->len + n + 1, text, (size_t)size);
    b->len += n + 1 + size;
    return 0;
}

/* `~` for None, else `<n>:<text>` of str(value); ints in decimal. */
static int canon_value(Buf *b, PyObject *value) {
    if (value == Py_None) return buf_put(b, "~", 1);
    if (PyUnicode_CheckExact(value)) {
        Py_ssize_t size;
        const char *text = PyUnicode_AsUTF8AndSize(value, &size);
        return text == NULL ? -1 : canon_bytes(b, text, size);
    }
    if (PyLong_CheckExact(value)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (!overflow) {
            if (v == -1 && PyErr_Occurred()) return -1;
            char digits[24];
            char *start = decimal(v, digits + sizeof digits);
            return canon_bytes(b, start, digits + sizeof digits - start);
        }
    }
    PyObject *text = PyObject_Str(value);
    if (text == NULL) return -1;
    int rc = canon_value(b, text);
    Py_DECREF(text);
    return rc;
}

/* A field's value for the canonical bytes: absent is a KeyError, as in chain.py. */
static int canon_field(Buf *b, const Fields *f, int key) {
    PyObject *value = f->v[key];
    if (value == NULL) {
        PyErr_SetObject(PyExc_KeyError, KEYS[key]);
        return -1;
    }
    return canon_value(b, value);
}

typedef struct {
    const char *text;
    Py_ssize_t size;
    PyObject *value;
} Entry;

/* UTF-8 byte order, which is code-point order: Python's sorted() of the keys. */
static int entry_order(const void *left, const void *right) {
    const Entry *a = left, *b = right;
    int c = memcmp(a->text, b->text, (size_t)(a->size < b->size ? a->size : b->size));
    if (c != 0) return c;
    return (a->size > b->size) - (a->size < b->size);
}

static int canon_attributes(Buf *b, PyObject *attributes) {
    if (!PyDict_Check(attributes)) {
        PyErr_SetString(PyExc_TypeError, "attributes: expected a dict");
        return -1;
    }
    Py_ssize_t count = PyDict_Size(attributes);
    PyObject *length = PyLong_FromSsize_t(count);
    if (length == NULL) return -1;
    int rc = canon_value(b, length);
    Py_DECREF(length);
    if (rc < 0 || count == 0) return rc;
    Entry small[16];
    Entry *entries = count <= 16 ? small : PyMem_Malloc(sizeof(Entry) * (size_t)count);
    if (entries == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t pos = 0, i = 0;
    PyObject *key, *value;
    rc = 0;
    while (PyDict_Next(attributes, &pos, &key, &value)) {
        if (!PyUnicode_Check(key)) {
            PyErr_SetString(PyExc_TypeError, "attributes: keys must be strings");
            rc = -1;
            break;
        }
        entries[i].text = PyUnicode_AsUTF8AndSize(key, &entries[i].size);
        if (entries[i].text == NULL) {
            rc = -1;
            break;
        }
        entries[i++].value = value;
    }
    if (rc == 0) {
        qsort(entries, (size_t)count, sizeof(Entry), entry_order);
        for (i = 0; i < count && rc == 0; i++) {
            rc = canon_bytes(b, entries[i].text, entries[i].size);
            if (rc == 0) rc = canon_value(b, entries[i].value);
        }
    }
    if (entries != small) PyMem_Free(entries);
    return rc;
}

/* A parent field for the canonical bytes: absent, None and every false value are
 * empty (Python's `actor.get(name) or ""`); 1 when it has a value, 0 when empty. */
static int parent_value(PyObject *value, PyObject **out) {
    *out = NULL;
    if (value == NULL || value == Py_None) return 0;
    int truth = PyObject_IsTrue(value);
    if (truth > 0) *out = value;
    return truth;
}

/* Version 2: the parent's two values after the attributes, only when one is not empty
 * (an event without a parent has the bytes of version 1). */
static int canon_parent(Buf *b, const Fields *f) {
    PyObject *process = NULL, *cmdline = NULL;
    int has_process = parent_value(f->v[K_PARENT_PROCESS], &process);
    int has_cmdline = has_process < 0 ? -1 : parent_value(f->v[K_PARENT_CMDLINE], &cmdline);
    if (has_process < 0 || has_cmdline < 0) return -1;
    if (!has_process && !has_cmdline) return 0;
    if ((process != NULL ? canon_value(b, process) : buf_put(b, "0:", 2)) < 0) return -1;
    return cmdline != NULL ? canon_value(b, cmdline) : buf_put(b, "0:", 2);
}

/* The canonical bytes of an event; `seq`, when not NULL, stands for event["seq"]. */
static int canonical_fields(Buf *b, const Fields *f, PyObject *seq) {
    static const int head[] = {K_EVENT_ID, K_TS, K_TENANT, K_SANDBOX_ID};
    static const int tail[] = {K_CATEGORY, K_ACTION, K_LEVEL, K_OUTCOME};
    for (int i = 0; i < 4; i++)
        if (canon_field(b, f, head[i]) < 0) return -1;
    if ((seq != NULL ? canon_value(b, seq) : canon_field(b, f, K_SEQ)) < 0) return -1;
    for (int i = 0; i < 4; i++)
        if (canon_field(b, f, tail[i]) < 0) return -1;
    PyObject *actor = f->v[K_ACTOR];
    if (actor == NULL) return canon_field(b, f, K_ACTOR); /* the KeyError */
    if (!PyDict_Check(actor)) {
        PyErr_Format(PyExc_TypeError, "expected a dict, got %.80s", Py_TYPE(actor)->tp_name);
        return -1;
    }
    for (int i = 0; i < V1_ACTOR_KEYS; i++)
        if (canon_field(b, f, ACTOR_KEYS[i]) < 0) return -1;
    if (canon_field(b, f, K_OBJECT) < 0 || canon_field(b, f, K_BYTES) < 0) return -1;
    PyObject *attributes = f->v[K_ATTRIBUTES];
    int rc = attributes == NULL ? canon_field(b, f, K_ATTRIBUTES) : canon_attributes(b, attributes);
    return rc < 0 ? rc : canon_parent(b, f);
}

static PyObject *canonical(PyObject *module, PyObject *event) {
    Buf b = {NULL, 0, 0};
    Fields f;
    if (gather(event, &f) < 0) return NULL;
    int rc = canonical_fields(&b, &f, NULL);
    release(&f);
    if (rc < 0) {
        buf_free(&b);
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize(b.data, b.len);
    buf_free(&b);
    return result;
}

/* ---- the chain ------------------------------------------------------------------ */

/* out = SHA-256(prev || canonical(fields)); b is scratch space. */
static int link_fields(Buf *b, const unsigned char *prev, const Fields *f, PyObject *seq,
                       unsigned char *out) {
    b->len = 0;
    if (buf_put(b, prev, 32) < 0 || canonical_fields(b, f, seq) < 0) return -1;
    /* The low-level calls: in OpenSSL 3 the one-shot SHA256() looks the algorithm up by
     * name on every call, which costs more than hashing an event. */
    SHA256_CTX context;
    SHA256_Init(&context);
    SHA256_Update(&context, b->data, (size_t)b->len);
    SHA256_Final(out, &context);
    return 0;
}

static int chain_link(Buf *b, const unsigned char *prev, PyObject *event, PyObject *seq,
                      unsigned char *out) {
    Fields f;
    if (gather(event, &f) < 0) return -1;
    int rc = link_fields(b, prev, &f, seq, out);
    release(&f);
    return rc;
}

static PyObject *chain_link_py(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyBytes_Check(args[0]) || PyBytes_GET_SIZE(args[0]) != 32) {
        PyErr_SetString(PyExc_TypeError, "link(prev_hash: 32 bytes, event)");
        return NULL;
    }
    Buf b = {NULL, 0, 0};
    unsigned char hash[32];
    int rc = chain_link(&b, (const unsigned char *)PyBytes_AS_STRING(args[0]), args[1], NULL,
                        hash);
    buf_free(&b);
    return rc < 0 ? NULL : PyBytes_FromStringAndSize((const char *)hash, 32);
}

static PyObject *seal(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "seal(events, seq, prev_hash)");
        return NULL;
    }
    int64_t seq;
    if (as_int64(args[1], "seq", &seq) < 0) return NULL;
    if (!PyBytes_Check(args[2]) || PyBytes_GET_SIZE(args[2]) != 32) {
        PyErr_SetString(PyExc_ValueError, "prev_hash: expected 32 bytes");
        return NULL;
    }
    PyObject *events = PySequence_Fast(args[0], "events: expected a sequence");
    if (events == NULL) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(events);
    PyObject **items = PySequence_Fast_ITEMS(events);
    PyObject *result = NULL;
    PyObject *seqs = PyList_New(count), *hashes = PyList_New(count);
    Buf b = {NULL, 0, 0};
    if (seqs == NULL || hashes == NULL) goto done;
    /* First every hash, then the writes: an error leaves the events as they were. */
    unsigned char hash[32];
    memcpy(hash, PyBytes_AS_STRING(args[2]), 32);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *number = PyLong_FromLongLong((long long)(seq + 1 + i));
        if (number == NULL) goto done;
        PyList_SET_ITEM(seqs, i, number);
        if (chain_link(&b, hash, items[i], number, hash) < 0) goto done;
        PyObject *digest = PyBytes_FromStringAndSize((const char *)hash, 32);
        if (digest == NULL) goto done;
        PyList_SET_ITEM(hashes, i, digest);
    }
    PyObject *prev = args[2];
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *event = items[i];
        PyObject *digest = PyList_GET_ITEM(hashes, i);
        if (PyDict_SetItem(event, KEYS[K_SEQ], PyList_GET_ITEM(seqs, i)) < 0 ||
            PyDict_SetItem(event, KEYS[K_PREV_HASH], prev) < 0 ||
            PyDict_SetItem(event, KEYS[K_HASH], digest) < 0)
            goto done;
        prev = digest;
    }
    result = Py_BuildValue("(LO)", (long long)(seq + count), prev);
done:
    buf_free(&b);
    Py_XDECREF(seqs);
    Py_XDECREF(hashes);
    Py_DECREF(events);
    return result;
}

static PyObject *bytes_of(Buf *b) {
    PyObject *result = PyBytes_FromStringAndSize(b->data, b->len);
    buf_free(b);
    return result;
}

static PyObject *encode_event(PyObject *module, PyObject *event) {
    Buf b = {NULL, 0, 0};
    if (avro_event(&b, event) < 0) {
        buf_free(&b);
        return NULL;
    }
    return bytes_of(&b);
}

static PyObject *seal_encode(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "seal_encode(event, seq, prev_hash)");
        return NULL;
    }
    PyObject *event = args[0], *prev = args[2];
    int64_t last;
    if (as_int64(args[1], "seq", &last) < 0) return NULL;
    if (!PyBytes_Check(prev) || PyBytes_GET_SIZE(prev) != 32) {
        PyErr_SetString(PyExc_ValueError, "prev_hash: expected 32 bytes");
        return NULL;
    }
    Fields f;
    if (gather(event, &f) < 0) return NULL;
    Buf b = {NULL, 0, 0};
    PyObject *result = NULL, *digest = NULL;
    PyObject *seq = PyLong_FromLongLong((long long)(last + 1));
    unsigned char hash[32];
    if (seq == NULL ||
        link_fields(&b, (const unsigned char *)PyBytes_AS_STRING(prev), &f, seq, hash) < 0)
        goto done;
    digest = PyBytes_FromStringAndSize((const char *)hash, 32);
    if (digest == NULL) goto done;
    /* Encode first, write after: an event the schema cannot hold is left as it was. */
    Sealed sealed = {seq, prev, digest};
    b.len = 0;
    if (avro_fields(&b, &f, &sealed) < 0) goto done;
    if (PyDict_SetItem(event, KEYS[K_SEQ], seq) < 0 ||
        PyDict_SetItem(event, KEYS[K_PREV_HASH], prev) < 0 ||
        PyDict_SetItem(event, KEYS[K_HASH], digest) < 0)
        goto done;
    result = PyBytes_FromStringAndSize(b.data, b.len);
done:
    release(&f);
    buf_free(&b);
    Py_XDECREF(seq);
    Py_XDECREF(digest);
    return result;
}

/* ---- Avro binary decoding (untrusted bytes: every read is bounds-checked) --------- */

typedef struct {
    const unsigned char *data;
    Py_ssize_t pos;
    Py_ssize_t end;
} Reader;

static int corrupt(const char *what, Reader *r) {
    PyErr_Format(PyExc_ValueError, "%s at byte %zd", what, r->pos);
    return -1;
}

static int read_long(Reader *r, int64_t *out) {
    uint64_t n = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->pos >= r->end) return corrupt("truncated long", r);
        unsigned char byte = r->data[r->pos++];
        n |= (uint64_t)(byte & 0x7F) << shift;
        if (!(byte & 0x80)) {
            *out = (int64_t)((n >> 1) ^ (~(n & 1) + 1)); /* zigzag */
            return 0;
        }
    }
    return corrupt("long longer than 10 bytes", r);
}

static PyObject *read_long_object(Reader *r) {
    int64_t v;
    return read_long(r, &v) < 0 ? NULL : PyLong_FromLongLong((long long)v);
}

static int read_length(Reader *r, Py_ssize_t *out) {
    int64_t n;
    if (read_long(r, &n) < 0) return -1;
    if (n < 0 || n > r->end - r->pos) return corrupt("bad length", r);
    *out = (Py_ssize_t)n;
    return 0;
}

static PyObject *read_string(Reader *r) {
    Py_ssize_t n;
    if (read_length(r, &n) < 0) return NULL;
    PyObject *text = PyUnicode_DecodeUTF8((const char *)r->data + r->pos, n, "strict");
    if (text == NULL) {
        PyErr_Clear();
        corrupt("string that is not UTF-8", r);
        return NULL;
    }
    r->pos += n;
    return text;
}

/* The last string read for one field, within one decode call: a batch's events repeat
 * their tenant, sandbox, action, user, ... so equal bytes reuse the same object. */
typedef struct {
    PyObject *text;
    const unsigned char *at;
    Py_ssize_t len;
} Last;

enum {
    L_TENANT, L_SANDBOX_ID, L_ACTION, L_USER, L_PROCESS, L_CMDLINE, L_PARENT_PROCESS,
    L_PARENT_CMDLINE, L_OBJECT, L_COUNT
};

static PyObject *read_string_cached(Reader *r, Last *last) {
    Py_ssize_t n;
    if (read_length(r, &n) < 0) return NULL;
    const unsigned char *at = r->data + r->pos;
    if (last->text != NULL && n == last->len && memcmp(at, last->at, (size_t)n) == 0) {
        r->pos += n;
        Py_INCREF(last->text);
        return last->text;
    }
    PyObject *text = PyUnicode_DecodeUTF8((const char *)at, n, "strict");
    if (text == NULL) {
        PyErr_Clear();
        corrupt("string that is not UTF-8", r);
        return NULL;
    }
    r->pos += n;
    Py_XSETREF(last->text, Py_NewRef(text));
    last->at = at;
    last->len = n;
    return text;
}

static PyObject *SYMBOL_OBJECTS[3][10];
static const char *const *SYMBOL_LISTS[3] = {CATEGORIES, LEVELS, OUTCOMES};

static PyObject *read_enum(Reader *r, int which) {
    int64_t index;
    if (read_long(r, &index) < 0) return NULL;
    const char *const *symbols = SYMBOL_LISTS[which];
    int64_t count = 0;
    while (symbols[count] != NULL) count++;
    if (index < 0 || index >= count) {
        corrupt("enum index out of range", r);
        return NULL;
    }
    PyObject *symbol = SYMBOL_OBJECTS[which][index];
    Py_INCREF(symbol);
    return symbol;
}

/* The branch of a ["null", T] union: 0 is null, 1 is T. */
static int read_union_branch(Reader *r, int *is_null) {
    int64_t branch;
    if (read_long(r, &branch) < 0) return -1;
    if (branch != 0 && branch != 1) return corrupt("bad union branch", r);
    *is_null = branch == 0;
    return 0;
}

static PyObject *read_optional_long(Reader *r) {
    int is_null;
    if (read_union_branch(r, &is_null) < 0) return NULL;
    if (is_null) Py_RETURN_NONE;
    return read_long_object(r);
}

static PyObject *read_optional_sha256(Reader *r) {
    int is_null;
    if (read_union_branch(r, &is_null) < 0) return NULL;
    if (is_null) Py_RETURN_NONE;
    if (r->end - r->pos < 32) {
        corrupt("truncated fixed", r);
        return NULL;
    }
    PyObject *digest = PyBytes_FromStringAndSize((const char *)r->data + r->pos, 32);
    r->pos += 32;
    return digest;
}

/* A block count; a negative count is followed by the block's size in bytes, which
   *size gets (else -1): the caller checks that the items took exactly that many bytes,
   as Avro readers that skip blocks by their size would read them. */
static int read_block_count(Reader *r, int64_t *count, int64_t *size) {
    *size = -1;
    if (read_long(r, count) < 0) return -1;
    if (*count < 0) {
        if (*count == INT64_MIN || read_long(r, size) < 0 || *size < 0 ||
            *size > r->end - r->pos)
            return corrupt("bad block", r);
        *count = -*count;
    }
    /* every item takes at least one byte */
    if (*count > r->end - r->pos) return corrupt("block count beyond the data", r);
    return 0;
}

static PyObject *read_attributes(Reader *r) {
    PyObject *map = PyDict_New();
    if (map == NULL) return NULL;
    for (;;) {
        int64_t count, size;
        if (read_block_count(r, &count, &size) < 0) goto fail;
        if (count == 0) return map;
        Py_ssize_t start = r->pos;
        for (int64_t i = 0; i < count; i++) {
            PyObject *key = read_string(r);
            if (key == NULL) goto fail;
            PyObject *value = read_string(r);
            if (value == NULL || PyDict_SetItem(map, key, value) < 0) {
                Py_DECREF(key);
                Py_XDECREF(value);
                goto fail;
            }
            Py_DECREF(key);
            Py_DECREF(value);
        }
        if (size >= 0 && r->pos - start != size) {
            corrupt("block size does not match its items", r);
            goto fail;
        }
    }
fail:
    Py_DECREF(map);
    return NULL;
}

/* Set record[KEYS[key]] to a value just read (a new reference, NULL on error). */
static int put(PyObject *record, int key, PyObject *value) {
    if (value == NULL) return -1;
    int rc = PyDict_SetItem(record, KEYS[key], value);
    Py_DECREF(value);
    return rc;
}

static PyObject *read_actor(Reader *r, Last *last) {
    PyObject *actor = _PyDict_NewPresized(8);
    if (actor == NULL) return NULL;
    if (put(actor, K_USER, read_string_cached(r, &last[L_USER])) < 0 ||
        put(actor, K_UID, read_optional_long(r)) < 0 ||
        put(actor, K_PID, read_optional_long(r)) < 0 ||
        put(actor, K_PPID, read_optional_long(r)) < 0 ||
        put(actor, K_PROCESS, read_string_cached(r, &last[L_PROCESS])) < 0 ||
        put(actor, K_CMDLINE, read_string_cached(r, &last[L_CMDLINE])) < 0 ||
        put(actor, K_PARENT_PROCESS, read_string_cached(r, &last[L_PARENT_PROCESS])) < 0 ||
        put(actor, K_PARENT_CMDLINE, read_string_cached(r, &last[L_PARENT_CMDLINE])) < 0) {
        Py_DECREF(actor);
        return NULL;
    }
    return actor;
}

static PyObject *read_event(Reader *r, Last *last) {
    /* 15 fields, and the worker adds a few: sized once instead of growing 8 -> 16 -> 32 */
    PyObject *event = _PyDict_NewPresized(20);
    if (event == NULL) return NULL;
    if (put(event, K_EVENT_ID, read_string(r)) < 0 || put(event, K_TS, read_long_object(r)) < 0 ||
        put(event, K_TENANT, read_string_cached(r, &last[L_TENANT])) < 0 ||
        put(event, K_SANDBOX_ID, read_string_cached(r, &last[L_SANDBOX_ID])) < 0 ||
        put(event, K_SEQ, read_long_object(r)) < 0 || put(event, K_CATEGORY, read_enum(r, 0)) < 0 ||
        put(event, K_ACTION, read_string_cached(r, &last[L_ACTION])) < 0 ||
        put(event, K_LEVEL, read_enum(r, 1)) < 0 || put(event, K_OUTCOME, read_enum(r, 2)) < 0 ||
        put(event, K_ACTOR, read_actor(r, last)) < 0 ||
        put(event, K_OBJECT, read_string_cached(r, &last[L_OBJECT])) < 0 ||
        put(event, K_BYTES, read_optional_long(r)) < 0 ||
        put(event, K_ATTRIBUTES, read_attributes(r)) < 0 ||
        put(event, K_PREV_HASH, read_optional_sha256(r)) < 0 ||
        put(event, K_HASH, read_optional_sha256(r)) < 0) {
        Py_DECREF(event);
        return NULL;
    }
    return event;
}

static void forget(Last *last) {
    for (int i = 0; i < L_COUNT; i++) Py_CLEAR(last[i].text);
}

static PyObject *BATCH_KEYS[4]; /* sandbox_id, collector, sent_at, events */

/* decode_event_batch(body[, max_events]): with max_events >= 0, a body holding more
   events raises ValueError("too many events ...") before the rest is decoded, so a
   message of many tiny events cannot make millions of Python objects. */
static PyObject *decode_event_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "decode_event_batch(body[, max_events])");
        return NULL;
    }
    long long max_events = -1;
    if (nargs == 2) {
        max_events = PyLong_AsLongLong(args[1]);
        if (max_events == -1 && PyErr_Occurred()) return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    Reader r = {view.buf, 0, view.len};
    Last last[L_COUNT] = {{NULL, NULL, 0}};
    PyObject *events = NULL, *record = PyDict_New();
    if (record == NULL) goto fail;
    if (put(record, K_SANDBOX_ID, read_string(&r)) < 0) goto fail;
    PyObject *collector = read_string(&r);
    if (collector == NULL || PyDict_SetItem(record, BATCH_KEYS[1], collector) < 0) {
        Py_XDECREF(collector);
        goto fail;
    }
    Py_DECREF(collector);
    PyObject *sent_at = read_long_object(&r);
    if (sent_at == NULL || PyDict_SetItem(record, BATCH_KEYS[2], sent_at) < 0) {
        Py_XDECREF(sent_at);
        goto fail;
    }
    Py_DECREF(sent_at);
    events = PyList_New(0);
    if (events == NULL) goto fail;
    for (;;) {
        int64_t count, size;
        if (read_block_count(&r, &count, &size) < 0) goto fail;
        if (count == 0) break;
        Py_ssize_t start = r.pos;
        if (max_events >= 0 && count > max_events - (long long)PyList_GET_SIZE(events)) {
            PyErr_Format(PyExc_ValueError, "too many events: more than %lld in one message",
                         max_events);
            goto fail;
        }
        for (int64_t i = 0; i < count; i++) {
            PyObject *event = read_event(&r, last);
            if (event == NULL || PyList_Append(events, event) < 0) {
                Py_XDECREF(event);
                goto fail;
            }
            Py_DECREF(event);
        }
        if (size >= 0 && r.pos - start != size) {
            corrupt("block size does not match its items", &r);
            goto fail;
        }
    }
    if (r.pos != r.end) {
        corrupt("bytes after the record", &r);
        goto fail;
    }
    if (PyDict_SetItem(record, BATCH_KEYS[3], events) < 0) goto fail;
    Py_DECREF(events);
    forget(last);
    PyBuffer_Release(&view);
    return record;
fail:
    Py_XDECREF(events);
    Py_XDECREF(record);
    forget(last);
    PyBuffer_Release(&view);
    return NULL;
}

/* ---- the module ------------------------------------------------------------------ */

static PyMethodDef METHODS[] = {
    {"encode_event_batch", (PyCFunction)(void (*)(void))encode_event_batch, METH_FASTCALL,
     "encode_event_batch(sandbox_id, collector, sent_at, events) -> bytes\n\n"
     "The Avro binary body of an audit_event_batch v2 record."},
    {"encode_event", (PyCFunction)encode_event, METH_O,
     "encode_event(event) -> bytes\n\nThe Avro binary of one AuditEvent (v2), an item of a "
     "batch's events."},
    {"seal_encode", (PyCFunction)(void (*)(void))seal_encode, METH_FASTCALL,
     "seal_encode(event, seq, prev_hash) -> bytes\n\n"
     "Give the event seq + 1, prev_hash and its hash, and return its Avro binary; the event "
     "is not changed when it cannot be encoded."},
    {"decode_event_batch", (PyCFunction)(void (*)(void))decode_event_batch, METH_FASTCALL,
     "decode_event_batch(body[, max_events]) -> dict\n\nThe audit_event_batch v2 record of an "
     "Avro body; ValueError names what is wrong with corrupt bytes, or that it holds more "
     "than max_events events."},
    {"canonical", (PyCFunction)canonical, METH_O,
     "canonical(event) -> bytes\n\nThe event's canonical bytes (chain version 2)."},
    {"link", (PyCFunction)(void (*)(void))chain_link_py, METH_FASTCALL,
     "link(prev_hash, event) -> bytes\n\nSHA-256(prev_hash || canonical(event))."},
    {"seal", (PyCFunction)(void (*)(void))seal, METH_FASTCALL,
     "seal(events, seq, prev_hash) -> (seq, hash)\n\n"
     "Give each event the next seq, its prev_hash and hash; returns the new chain head."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {
    PyModuleDef_HEAD_INIT, "pipeline._native",
    "The collector's hot path in C: chain sealing and the event-batch Avro encoder.", -1,
    METHODS, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    for (int i = 0; i < K_COUNT; i++) {
        KEYS[i] = PyUnicode_InternFromString(KEY_NAMES[i]);
        if (KEYS[i] == NULL) return NULL;
    }
    static const char *batch_keys[4] = {"sandbox_id", "collector", "sent_at", "events"};
    for (int i = 0; i < 4; i++) {
        BATCH_KEYS[i] = PyUnicode_InternFromString(batch_keys[i]);
        if (BATCH_KEYS[i] == NULL) return NULL;
    }
    for (int which = 0; which < 3; which++) {
        for (int i = 0; SYMBOL_LISTS[which][i] != NULL; i++) {
            SYMBOL_OBJECTS[which][i] = PyUnicode_InternFromString(SYMBOL_LISTS[which][i]);
            if (SYMBOL_OBJECTS[which][i] == NULL) return NULL;
        }
    }
    return PyModule_Create(&MODULE);
}
