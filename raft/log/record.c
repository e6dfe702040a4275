/* The file log's on-disk codecs: record headers, the segment scan, the metadata file. */
#include <stdio.h>
#include <string.h>

#include <zlib.h>

#include <raftstack/errors.h>

#include "raft/log/log_internal.h"
#include "stack/codec.h"

static uint32_t crc(const uint8_t *p, size_t n) {
  uLong c = crc32(0L, Z_NULL, 0);
  /* zlib takes uInt lengths: feed large payloads in pieces. */
  while (n > 0) {
    uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
    c = crc32(c, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return (uint32_t)c;
}

void log_record_encode(uint8_t out[LOG_RECORD_HEADER], rs_term term, rs_index index, uint8_t type,
                       const uint8_t *data, uint32_t len) {
  struct rs_writer w;
  writer_init(&w, out, LOG_RECORD_HEADER);
  put_u32(&w, len);
  put_u8(&w, type);
  put_u8(&w, 0);
  put_u16(&w, 0);
  put_u64(&w, term);
  put_u64(&w, index);
  put_u32(&w, len ? crc(data, len) : crc(NULL, 0));
  put_u32(&w, crc(out, 28));
}

/* The header at p (LOG_RECORD_HEADER bytes): true when its own CRC holds. */
static bool header_decode(const uint8_t *p, struct log_record *r, uint32_t *data_crc) {
  struct rs_reader rd;
  reader_init(&rd, p, LOG_RECORD_HEADER);
  r->len = get_u32(&rd);
  r->type = get_u8(&rd);
  uint8_t z1 = get_u8(&rd);
  uint16_t z2 = get_u16(&rd);
  r->term = get_u64(&rd);
  r->index = get_u64(&rd);
  *data_crc = get_u32(&rd);
  uint32_t hcrc = get_u32(&rd);
  return rd.err == 0 && hcrc == crc(p, 28) && z1 == 0 && z2 == 0;
}

static bool all_zero(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return false;
  return true;
}

static int scan_fail(struct log_scan *out, size_t off, const char *what) {
  out->err = RS_ECORRUPT;
  out->err_offset = off;
  snprintf(out->what, sizeof(out->what), "%s", what);
  return RS_ECORRUPT;
}

/* A bad record at off: a torn tail in the last segment (true), or corruption. */
static bool torn_tail(const uint8_t *buf, size_t len, size_t off, bool last, bool header_ok,
                      const struct log_record *r) {
  if (!last) return false;
  size_t rest = len - off;
  if (rest < LOG_RECORD_HEADER) return true;
  if (!header_ok) return all_zero(buf + off, rest);
  /* A valid header: torn when its payload runs to or past the end of the file. */
  return (uint64_t)LOG_RECORD_HEADER + r->len >= rest;
}

int log_segment_scan(const uint8_t *buf, size_t len, rs_index first, rs_term prev_term, bool last,
                     int (*fn)(void *arg, const struct log_record *r), void *arg,
                     struct log_scan *out) {
  memset(out, 0, sizeof(*out));
  size_t off = 0;
  rs_index expect = first;
  rs_term term = prev_term;
  while (off < len) {
    struct log_record r;
    uint32_t data_crc;
    bool hok = len - off >= LOG_RECORD_HEADER && header_decode(buf + off, &r, &data_crc);
    bool complete =
        hok && r.len <= LOG_RECORD_MAX && (uint64_t)LOG_RECORD_HEADER + r.len <= len - off;
    if (!complete || crc(buf + off + LOG_RECORD_HEADER, complete ? r.len : 0) != data_crc) {
      if (torn_tail(buf, len, off, last, hok && r.len <= LOG_RECORD_MAX, &r)) {
        out->torn = true;
        break;
      }
      if (len - off < LOG_RECORD_HEADER) return scan_fail(out, off, "short record header");
      if (!hok) return scan_fail(out, off, "bad record header (CRC mismatch)");
      if (r.len > LOG_RECORD_MAX) return scan_fail(out, off, "record length over the maximum");
      if (!complete) return scan_fail(out, off, "record runs past the end of the segment");
      return scan_fail(out, off, "bad record payload (CRC mismatch)");
    }
    if (r.index != expect) {
      char what[96];
      snprintf(what, sizeof(what), "index %llu where %llu was expected",
               (unsigned long long)r.index, (unsigned long long)expect);
      return scan_fail(out, off, what);
    }
    if (r.term < term) {
      char what[96];
      snprintf(what, sizeof(what), "term %llu after term %llu (terms never decrease)",
               (unsigned long long)r.term, (unsigned long long)term);
      return scan_fail(out, off, what);
    }
    if (r.type < RAFT_ENTRY_COMMAND || r.type > RAFT_ENTRY_CONFIG)
      return scan_fail(out, off, "unknown entry type");
    r.data = buf + off + LOG_RECORD_HEADER;
    r.offset = off;
    if (fn) {
      int rc = fn(arg, &r);
      if (rc != 0) {
        out->err = rc;
        out->err_offset = off;
        snprintf(out->what, sizeof(out->what), "%s", rs_strerror(rc));
        return rc;
      }
    }
    term = r.term;
    expect++;
    off += LOG_RECORD_HEADER + r.len;
    out->valid_len = off;
  }
  return 0;
}

size_t log_meta_encode(uint8_t *out, const struct log_meta *m) {
  size_t vlen = strnlen(m->voted_for, RAFT_ID_MAX);
  struct rs_writer w;
  writer_init(&w, out, LOG_META_MAX);
  put_u32(&w, LOG_META_MAGIC);
  put_u32(&w, LOG_META_VERSION);
  put_u64(&w, m->term);
  put_u64(&w, m->commit);
  put_u64(&w, m->prefix_index);
  put_u64(&w, m->prefix_term);
  put_u8(&w, (uint8_t)vlen);
  put_bytes(&w, m->voted_for, vlen);
  put_u32(&w, crc(out, w.len));
  return w.len;
}

int log_meta_decode(const uint8_t *p, size_t len, struct log_meta *m, char *what, size_t whatlen) {
  memset(m, 0, sizeof(*m));
  struct rs_reader r;
  reader_init(&r, p, len);
  uint32_t magic = get_u32(&r), version = get_u32(&r);
  m->term = get_u64(&r);
  m->commit = get_u64(&r);
  m->prefix_index = get_u64(&r);
  m->prefix_term = get_u64(&r);
  uint8_t vlen = get_u8(&r);
  const uint8_t *v = get_bytes(&r, vlen);
  size_t body = r.pos;
  uint32_t c = get_u32(&r);
  const char *bad = NULL;
  if (r.err)
    bad = "metadata file too short";
  else if (magic != LOG_META_MAGIC)
    bad = "not a raftstack log metadata file (bad magic)";
  else if (c != crc(p, body))
    bad = "metadata CRC mismatch";
  else if (version != LOG_META_VERSION)
    bad = "unsupported metadata version";
  else if (reader_remaining(&r) != 0)
    bad = "trailing bytes after the metadata";
  if (bad) {
    snprintf(what, whatlen, "%s", bad);
    memset(m, 0, sizeof(*m));
    return RS_ECORRUPT;
  }
  memcpy(m->voted_for, v, vlen);
  m->voted_for[vlen] = '\0';
  return 0;
}
