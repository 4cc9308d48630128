/* A minimal JSON scanner for batching: counts and slices the items of a
 * request's batch input without parsing (or allocating for) the whole body. */
#include "traffic/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

size_t bh_json_skip_ws(const char *s, size_t i, size_t n) {
  while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
    i++;
  return i;
}

/* End (exclusive) of the string starting at s[i] == '"', or 0 on error. */
static size_t skip_string(const char *s, size_t i, size_t n) {
  for (i++; i < n; i++) {
    if (s[i] == '\\')
      i++; /* the escaped character, whatever it is, cannot end the string */
    else if (s[i] == '"')
      return i + 1;
  }
  return 0;
}

/* End (exclusive) of the JSON value starting at s[i], or 0 on error. Nested
 * containers are only tracked by depth, which is all counting needs. */
static size_t skip_value(const char *s, size_t i, size_t n) {
  if (i >= n)
    return 0;
  if (s[i] == '"')
    return skip_string(s, i, n);
  if (s[i] == '[' || s[i] == '{') {
    size_t depth = 0;
    for (; i < n; i++) {
      char c = s[i];
      if (c == '"') {
        size_t e = skip_string(s, i, n);
        if (e == 0)
          return 0;
        i = e - 1;
      } else if (c == '[' || c == '{') {
        depth++;
      } else if (c == ']' || c == '}') {
        if (--depth == 0)
          return i + 1;
      }
    }
    return 0;
  }
  size_t start = i;
  while (i < n && !strchr(",]} \t\r\n", s[i]) && s[i] != '\0')
    i++;
  return i > start ? i : 0;
}

/* Whether the raw JSON string content s[0..len) (between the quotes) equals
 * name. Plain keys compare bytes; keys with escapes are decoded for the simple
 * escapes (a \u key is compared undecoded, so it never matches: fine, Python
 * then sees the body as one item and decodes it properly). */
static int key_equals(const char *s, size_t len, const char *name) {
  size_t j = 0;
  for (size_t i = 0; i < len; i++, j++) {
    char c = s[i];
    if (c == '\\' && i + 1 < len) {
      char e = s[++i];
      c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'b' ? '\b' : e == 'f' ? '\f' : e;
      if (e == 'u')
        return 0;
    }
    if (name[j] == '\0' || name[j] != c)
      return 0;
  }
  return name[j] == '\0';
}

int bh_json_items(const char *body, size_t len, int root, const char *field,
                  size_t *open, size_t *close, long *count, size_t *elems, size_t max_elems) {
  size_t i, v;
  if (body == NULL)
    return -EINVAL;
  i = bh_json_skip_ws(body, 0, len);
  if (root) {
    v = i;
  } else {
    if (field == NULL || i >= len || body[i] != '{')
      return -EINVAL;
    i = bh_json_skip_ws(body, i + 1, len);
    for (;;) {
      if (i >= len || body[i] != '"')
        return -ENOENT;
      size_t kend = skip_string(body, i, len);
      if (kend == 0)
        return -EINVAL;
      int match = key_equals(body + i + 1, kend - i - 2, field);
      i = bh_json_skip_ws(body, kend, len);
      if (i >= len || body[i] != ':')
        return -EINVAL;
      i = bh_json_skip_ws(body, i + 1, len);
      if (match) {
        v = i;
        break;
      }
      size_t e = skip_value(body, i, len);
      if (e == 0)
        return -EINVAL;
      i = bh_json_skip_ws(body, e, len);
      if (i < len && body[i] == ',') {
        i = bh_json_skip_ws(body, i + 1, len);
        continue;
      }
      return -ENOENT; /* '}' or garbage: the field is not there */
    }
  }
  if (v >= len)
    return -EINVAL;
  if (body[v] != '[') {
    *count = -1;
    return skip_value(body, v, len) ? 0 : -EINVAL;
  }
  long c = 0;
  size_t j = bh_json_skip_ws(body, v + 1, len);
  if (j < len && body[j] == ']') {
    *open = v;
    *close = j;
    *count = 0;
    return 0;
  }
  for (;;) {
    size_t e = skip_value(body, j, len);
    if (e == 0)
      return -EINVAL;
    if (elems != NULL) {
      if ((size_t)c >= max_elems)
        return -ENOSPC;
      elems[2 * c] = j;
      elems[2 * c + 1] = e;
    }
    c++;
    j = bh_json_skip_ws(body, e, len);
    if (j < len && body[j] == ',') {
      j = bh_json_skip_ws(body, j + 1, len);
      continue;
    }
    if (j < len && body[j] == ']')
      break;
    return -EINVAL;
  }
  *open = v;
  *close = j;
  *count = c;
  return 0;
}

uint32_t bh_json_count_items(const char *body, size_t len, int root, const char *field) {
  size_t open, close;
  long count;
  if (bh_json_items(body, len, root, field, &open, &close, &count, NULL, 0) != 0 || count < 1)
    return 1;
  return count > UINT32_MAX ? UINT32_MAX : (uint32_t)count;
}

char *bh_json_slice(const char *body, size_t len, int root, const char *field,
                    uint32_t from, uint32_t to, size_t *out_len) {
  size_t open, close;
  long count;
  if (bh_json_items(body, len, root, field, &open, &close, &count, NULL, 0) != 0 || count < 0 ||
      from > to || to > (uint64_t)count)
    return NULL;
  size_t *el = malloc(2 * (size_t)(count ? count : 1) * sizeof(size_t));
  if (el == NULL)
    return NULL;
  if (bh_json_items(body, len, root, field, &open, &close, &count, el, (size_t)count) != 0) {
    free(el);
    return NULL;
  }
  size_t ms = from < to ? el[2 * from] : 0, me = from < to ? el[2 * (to - 1) + 1] : 0;
  free(el);
  size_t n = (open + 1) + (me - ms) + (len - close);
  char *out = malloc(n + 1);
  if (out == NULL)
    return NULL;
  memcpy(out, body, open + 1);
  memcpy(out + open + 1, body + ms, me - ms);
  memcpy(out + open + 1 + (me - ms), body + close, len - close);
  out[n] = '\0';
  *out_len = n;
  return out;
}
