/* Per-object and per-character loops of PDF ingestion (ingest/pdf_native.py), over PDFium's C API
 * through the function pointers pypdfium2 loaded (the same library, the same handles). Each
 * function is the C form of a Python reference that stays the fallback and must give the same
 * result: the arithmetic is in double, in the reference's order (built with -ffp-contract=off).
 * Read-only: nothing here changes a page. */
#include <math.h>
#include <stddef.h>
#include <string.h>

typedef void *H;
typedef struct { float a, b, c, d, e, f; } Matrix;          /* FS_MATRIX */

typedef struct {                                           /* filled by ingest/pdf_native.py */
    int (*page_count_objects)(H page);
    H (*page_get_object)(H page, int index);
    int (*form_count_objects)(H form);
    H (*form_get_object)(H form, unsigned long index);
    int (*get_type)(H obj);
    int (*get_fill)(H obj, unsigned *r, unsigned *g, unsigned *b, unsigned *a);
    int (*font_size)(H obj, float *size);
    int (*get_matrix)(H obj, Matrix *m);
    int (*count_chars)(H textpage);
    int (*char_box)(H textpage, int index, double *left, double *right, double *bottom, double *top);
    int type_text, type_form;                              /* FPDF_PAGEOBJ_TEXT, FPDF_PAGEOBJ_FORM */
    unsigned (*get_unicode)(H textpage, int index);
    int (*char_origin)(H textpage, int index, double *x, double *y);
    int (*get_draw_mode)(H path, int *fill_mode, int *stroke);
    int (*get_bounds)(H obj, float *left, float *bottom, float *right, float *top);
    int type_path;                                         /* FPDF_PAGEOBJ_PATH */
    int (*annot_count)(H page);
    H (*get_annot)(H page, int index);
    int (*annot_subtype)(H annot);
    int (*annot_flags)(H annot);
    void (*close_annot)(H annot);
} Pdfium;

enum { CLEAR = 0, TINY = 1, PALE = 2 };

typedef struct {
    H obj;
    int why;            /* CLEAR, TINY (detail[0]: the squared size on the page), PALE (detail: fill RGB) */
    double detail[3];
    double outer[6];    /* the matrix from the object's parent to the page */
} Candidate;

typedef struct {
    const Pdfium *f;
    unsigned pale;
    double min_squared;
    Candidate *out;
    int cap, n;
} Scan;

/* The object's matrix followed by `outer` (pdf_hidden._matrix). */
static void compose(const Pdfium *f, H obj, const double *outer, double *to) {
    Matrix m;
    f->get_matrix(obj, &m);
    double a = outer[0], b = outer[1], c = outer[2], d = outer[3], e = outer[4], ff = outer[5];
    to[0] = (double)m.a * a + (double)m.b * c;
    to[1] = (double)m.a * b + (double)m.b * d;
    to[2] = (double)m.c * a + (double)m.d * c;
    to[3] = (double)m.c * b + (double)m.d * d;
    to[4] = (double)m.e * a + (double)m.f * c + e;
    to[5] = (double)m.e * b + (double)m.f * d + ff;
}

static void add(Scan *s, H obj, const double *outer, int why, double x, double y, double z) {
    if (s->n < s->cap) {
        Candidate *c = &s->out[s->n];
        c->obj = obj;
        c->why = why;
        c->detail[0] = x, c->detail[1] = y, c->detail[2] = z;
        for (int i = 0; i < 6; i++) c->outer[i] = outer[i];
    }
    s->n++;
}

/* pdf_hidden._candidates: `parent` is the page (form == 0, outer the identity, used as is) or a
 * form XObject (its matrix to the page `outer`). */
static void scan(Scan *s, H parent, int form, const double *outer) {
    const Pdfium *f = s->f;
    int count = form ? f->form_count_objects(parent) : f->page_count_objects(parent);
    for (int i = 0; i < count; i++) {
        H obj = form ? f->form_get_object(parent, (unsigned long)i) : f->page_get_object(parent, i);
        int kind = f->get_type(obj);
        if (kind == f->type_text) {
            unsigned r = 0, g = 0, b = 0, alpha = 0;
            if (!f->get_fill(obj, &r, &g, &b, &alpha))
                continue;                                   /* a pattern or shading: colour unknown */
            if (alpha == 0) {
                add(s, obj, outer, CLEAR, 0, 0, 0);
                continue;
            }
            float size = 0;
            f->font_size(obj, &size);
            double m[6];
            if (form) {
                compose(f, obj, outer, m);
            } else {
                Matrix raw;
                f->get_matrix(obj, &raw);
                m[0] = raw.a, m[1] = raw.b, m[2] = raw.c, m[3] = raw.d;
            }
            double x = m[0] * m[0] + m[1] * m[1], y = m[2] * m[2] + m[3] * m[3];
            double squared = (y < x ? y : x) * (double)size * (double)size;    /* Python's min(x, y) */
            if (squared < s->min_squared)
                add(s, obj, outer, TINY, squared, 0, 0);
            else if (r >= s->pale && g >= s->pale && b >= s->pale)
                add(s, obj, outer, PALE, r, g, b);
        } else if (kind == f->type_form) {
            double inner[6];
            compose(f, obj, outer, inner);
            scan(s, obj, 1, inner);
        }
    }
}

/* The text objects of `page` that may be unseen, in the reference's order: how many there are
 * (only the first `cap` are written to `out`; call again with room for all). */
int jd_unseen_candidates(const Pdfium *f, H page, unsigned pale, double min_squared, Candidate *out, int cap) {
    static const double identity[6] = {1, 0, 0, 1, 0, 0};
    Scan s = {f, pale, min_squared, out, cap, 0};
    scan(&s, page, 0, identity);
    return s.n;
}

static int inside(double l, double r, double b, double t, const float *box) {   /* box: l, b, r, t */
    return l >= box[0] && r <= box[2] && b >= box[1] && t <= box[3];
}

/* 1 when every character's box (normalised, as PDFium's rectangle intersection takes it) lies
 * inside both rectangles (left, bottom, right, top as FPDFText_GetBoundedText takes them: float):
 * then each character meets each rectangle exactly when it meets the other, and the bounded text
 * of the two is the same. 0 when a character lies (partly) outside, or its box cannot be read. */
int jd_chars_inside(const Pdfium *f, H textpage, const double *rect_a, const double *rect_b) {
    float a[4], b[4];
    for (int i = 0; i < 4; i++) a[i] = (float)rect_a[i], b[i] = (float)rect_b[i];
    for (int k = 0; k < 2; k++) {                                     /* normalised, like PDFium's */
        float *box = k ? b : a, tmp;
        if (box[0] > box[2]) tmp = box[0], box[0] = box[2], box[2] = tmp;
        if (box[1] > box[3]) tmp = box[1], box[1] = box[3], box[3] = tmp;
    }
    int n = f->count_chars(textpage);
    for (int i = 0; i < n; i++) {
        double l, r, bottom, top;
        if (!f->char_box(textpage, i, &l, &r, &bottom, &top))
            return 0;
        if (l > r) { double tmp = l; l = r; r = tmp; }
        if (bottom > top) { double tmp = bottom; bottom = top; top = tmp; }
        if (!(inside(l, r, bottom, top, a) && inside(l, r, bottom, top, b)))
            return 0;                                                 /* NaN too */
    }
    return 1;
}

/* pdf._angle_votes: for index = 0, step, 2 step, ... below count - 1 (at most `cap` samples), the
 * pair of characters index and index + 1 votes for the direction (0..3, quarter turns
 * counterclockwise) of the move from the first's origin to the second's when both are letters or
 * digits: round(degrees(atan2(dy, dx)) / 90) % 4, as Python computes it (same libm, round half to
 * even, -ffp-contract=off). Letters and digits are Python's str.isalnum, given for the code points
 * below `limit` as a bitmap (`alnum`, bit c % 8 of byte c / 8); a pair with a code point at or over
 * `limit`, or a move that is not finite, is left to Python: its index goes to `deferred` (room for
 * `cap`). Adds to `votes` (4); returns how many deferred. */
int jd_angle_votes(const Pdfium *f, H textpage, int step, int cap, int *votes, int *deferred,
                   const unsigned char *alnum, unsigned limit) {
    int count = f->count_chars(textpage), n = 0, d = 0;
    for (int index = 0; index < count - 1 && n < cap; index += step, n++) {
        unsigned first = f->get_unicode(textpage, index), second = f->get_unicode(textpage, index + 1);
        if ((first < limit && !(alnum[first >> 3] >> (first & 7) & 1)) ||
            (second < limit && !(alnum[second >> 3] >> (second & 7) & 1)))
            continue;                                    /* a space, line break or mark: not a run */
        if (first >= limit || second >= limit) {
            deferred[d++] = index;
            continue;
        }
        double x0, y0, x1, y1;
        if (!(f->char_origin(textpage, index, &x0, &y0) && f->char_origin(textpage, index + 1, &x1, &y1)))
            continue;                                    /* NaN in Python: no vote */
        double dx = x1 - x0, dy = y1 - y0;
        if (dx == 0 && dy == 0)
            continue;
        if (!isfinite(dx) || !isfinite(dy)) {
            deferred[d++] = index;
            continue;
        }
        double quarter = atan2(dy, dx) * (180.0 / 3.141592653589793) / 90;   /* math.degrees(x) / 90 */
        long k = (long)nearbyint(quarter);                                 /* Python's round() */
        votes[((k % 4) + 4) % 4]++;
    }
    return d;
}

/* pdf_covered._collect's question, cheaply: does `parent` (the page, or a form XObject whose matrix
 * to the page is `outer`) hold a text object (`texts`) and a filled path whose page box is at least
 * `min_box` both ways (`boxes`)? Counts both, into nested forms. The box is found as _big_box finds
 * it (bounds through `outer` as PdfMatrix.on_rect does), with `min_box` given a hair lower by the
 * caller: a page this calls boxless has none for the Python walk either. */
static void cover_scan(const Pdfium *f, H parent, int form, const double *outer, double min_box,
                       int *texts, int *boxes) {
    int count = form ? f->form_count_objects(parent) : f->page_count_objects(parent);
    for (int i = 0; i < count; i++) {
        H obj = form ? f->form_get_object(parent, (unsigned long)i) : f->page_get_object(parent, i);
        int kind = f->get_type(obj);
        if (kind == f->type_text) {
            (*texts)++;
        } else if (kind == f->type_form) {
            double inner[6];
            compose(f, obj, outer, inner);
            cover_scan(f, obj, 1, inner, min_box, texts, boxes);
        } else if (kind == f->type_path) {
            int fill_mode = 0, stroke = 0;
            float l, b, r, t;
            if (!f->get_draw_mode(obj, &fill_mode, &stroke) || !fill_mode)
                continue;
            if (!f->get_bounds(obj, &l, &b, &r, &t)) {
                (*boxes)++;                                 /* unknown: let the Python walk decide */
                continue;
            }
            double xs[4], ys[4], corner[4][2] = {{l, t}, {l, b}, {r, t}, {r, b}};
            for (int k = 0; k < 4; k++) {
                xs[k] = outer[0] * corner[k][0] + outer[2] * corner[k][1] + outer[4];
                ys[k] = outer[1] * corner[k][0] + outer[3] * corner[k][1] + outer[5];
            }
            double x0 = xs[0], x1 = xs[0], y0 = ys[0], y1 = ys[0];
            for (int k = 1; k < 4; k++) {
                if (xs[k] < x0) x0 = xs[k];
                if (xs[k] > x1) x1 = xs[k];
                if (ys[k] < y0) y0 = ys[k];
                if (ys[k] > y1) y1 = ys[k];
            }
            if (!(x1 - x0 < min_box) && !(y1 - y0 < min_box))   /* NaN counts as a box */
                (*boxes)++;
        }
    }
}

/* The page's text objects and possible covering boxes, counted (boxes into `*boxes`); returns the
 * number of text objects. */
int jd_cover_counts(const Pdfium *f, H page, double min_box, int *boxes) {
    static const double identity[6] = {1, 0, 0, 1, 0, 0};
    int texts = 0;
    *boxes = 0;
    cover_scan(f, page, 0, identity, min_box, &texts, boxes);
    return texts;
}

/* pdf_annotations._shown_annotations: the index and subtype of each annotation of `page` whose
 * subtype has its bit in `wanted` and whose flags have none of `not_shown`, in order (the flags are
 * read only for those subtypes: a manual's thousands of links are only asked their subtype). Returns
 * how many there are; only the first `cap` are written (call again with room for all). */
int jd_shown_annots(const Pdfium *f, H page, unsigned long long wanted, int not_shown, int *indices, int *kinds,
                    int cap) {
    int count = f->annot_count(page), n = 0;
    for (int i = 0; i < count; i++) {
        H annot = f->get_annot(page, i);
        int kind = f->annot_subtype(annot);
        if (kind >= 0 && kind < 64 && (wanted >> kind & 1) && !(f->annot_flags(annot) & not_shown)) {
            if (n < cap)
                indices[n] = i, kinds[n] = kind;
            n++;
        }
        f->close_annot(annot);
    }
    return n;
}

/* PDF syntax: white-space and delimiter characters (PDF 32000-1, 7.2.2), as PDFium's lexer has them. */
static int pdf_space(unsigned char c) { return c == 0 || c == 9 || c == 10 || c == 12 || c == 13 || c == 32; }
static int pdf_delim(unsigned char c) {
    return c == '(' || c == ')' || c == '<' || c == '>' || c == '[' || c == ']' || c == '{' || c == '}' ||
           c == '/' || c == '%';
}
static int hex_value(unsigned char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The name token starting after the '/' at `p`, its #xx escapes decoded (as PDFium decodes names),
 * into `out` (at most `room` - 1 bytes, then 0-terminated; a longer name is cut, which no watched
 * name is). Returns the position after the token. */
static const unsigned char *read_name(const unsigned char *p, const unsigned char *end, char *out, int room,
                                      int *length) {
    int n = 0;
    while (p < end && !pdf_space(*p) && !pdf_delim(*p)) {
        int c = *p++;
        if (c == '#' && end - p >= 2 && hex_value(p[0]) >= 0 && hex_value(p[1]) >= 0) {
            c = hex_value(p[0]) * 16 + hex_value(p[1]);
            p += 2;
        }
        if (n < room - 1)
            out[n] = (char)c;
        n++;
    }
    out[n < room - 1 ? n : room - 1] = 0;
    *length = n;
    return p;
}

/* Whether `name` is in `list`: names, each as its length (one byte) and its bytes, a 0 length last. */
static int in_list(const char *name, int length, const unsigned char *list) {
    for (; *list; list += *list + 1)
        if (*list == length && list[1] == (unsigned char)name[0] && memcmp(name, list + 1, (size_t)length) == 0)
            return 1;
    return 0;
}

/* pdf._may_read_annotations on one part of a file (its bytes, or a piece of an object stream
 * inflated): 1 when some name token in it is one of `names` (see in_list; #xx escapes decoded),
 * or the name Subtype is followed (past white space and comments) by one of `after_subtype`, by
 * anything but a name, or by the end of the part (where the next piece cannot tell; this rule only
 * when `after_subtype` names one); else 0. Binary
 * stream data is scanned too: a name found there only costs the skip. */
int jd_names_present(const unsigned char *data, size_t size, const unsigned char *names,
                     const unsigned char *after_subtype) {
    const unsigned char *p = data, *end = data + size;
    char name[40];
    int length;
    while (p < end && (p = memchr(p, '/', (size_t)(end - p))) != NULL) {
        p = read_name(p + 1, end, name, sizeof name, &length);
        if (in_list(name, length, names))
            return 1;
        if (!*after_subtype || length != 7 || memcmp(name, "Subtype", 7) != 0)
            continue;                                                    /* no Subtype rule when none */
        for (;;) {                                                       /* white space and comments */
            while (p < end && pdf_space(*p)) p++;
            if (p < end && *p == '%') {
                while (p < end && *p != '\n' && *p != '\r') p++;
                continue;
            }
            break;
        }
        if (p >= end || *p != '/')
            return 1;                                                    /* not a name, or cut off here */
        const unsigned char *value = read_name(p + 1, end, name, sizeof name, &length);
        if (in_list(name, length, after_subtype) || value >= end)
            return 1;
    }
    return 0;
}
