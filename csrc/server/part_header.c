/* The values inside a multipart part's header lines: parameters are read
 * the way browsers write them, and a filename is cut down to what is safe to
 * create in the request's temp dir. */
#include "server/part_header.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Finds parameter `key` in "a/b; k=v; k2="v 2"" and unquotes it into out. */
int bh_part_param(const char *s, size_t len, const char *key, char *out, size_t cap,
                  size_t *outlen) {
  size_t klen = strlen(key), i = 0;

  /* skip the media type / disposition type */
  while (i < len && s[i] != ';')
    i++;
  while (i < len) {
    size_t ks, ke, o = 0;
    i++; /* ';' */
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
      i++;
    ks = i;
    while (i < len && s[i] != '=' && s[i] != ';')
      i++;
    ke = i;
    while (ke > ks && (s[ke - 1] == ' ' || s[ke - 1] == '\t'))
      ke--;
    if (i >= len || s[i] == ';')
      continue;
    i++; /* '=' */
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
      i++;
    {
      int match = ke - ks == klen && strncasecmp(s + ks, key, klen) == 0;
      if (i < len && s[i] == '"') {
        i++;
        while (i < len && s[i] != '"') {
          char ch = s[i];
          /* only \" and \\ are escapes: a browser on Windows may send a
           * path with bare backslashes */
          if (ch == '\\' && i + 1 < len && (s[i + 1] == '"' || s[i + 1] == '\\'))
            ch = s[++i];
          if (match && o + 1 < cap)
            out[o++] = ch;
          i++;
        }
        if (i < len)
          i++;
        while (i < len && s[i] != ';')
          i++;
      } else {
        size_t vs = i, ve;
        while (i < len && s[i] != ';')
          i++;
        ve = i;
        while (ve > vs && (s[ve - 1] == ' ' || s[ve - 1] == '\t'))
          ve--;
        if (match)
          for (; vs < ve && o + 1 < cap; vs++)
            out[o++] = s[vs];
      }
      if (match) {
        out[o] = '\0';
        *outlen = o;
        return 1;
      }
    }
  }
  return 0;
}

/* A name safe in any directory: the basename, with anything but letters,
 * digits, '.', '-' and '_' replaced, never hidden, never empty. */
void bh_part_filename(const char *in, char *out, size_t cap) {
  const char *base = in, *s;
  size_t n, o = 0;

  for (s = in; *s; s++)
    if (*s == '/' || *s == '\\')
      base = s + 1;
  n = strlen(base);
  if (n > BH_PART_NAME_MAX) /* keep the end: the extension matters */
    base += n - BH_PART_NAME_MAX;
  for (s = base; *s && o + 1 < cap; s++) {
    unsigned char ch = (unsigned char)*s;
    int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
             (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_';
    out[o++] = ok ? (char)ch : '_';
  }
  out[o] = '\0';
  if (o == 0)
    snprintf(out, cap, "upload");
  else if (out[0] == '.')
    out[0] = '_';
}
